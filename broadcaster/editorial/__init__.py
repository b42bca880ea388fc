"""The content workflow: immutable revisions, submission, four-eyes approval, attachments."""
