"""Schedules (one-off, RRULE in Asia/Ho_Chi_Minh), quiet hours and tier waves. Not built yet."""
