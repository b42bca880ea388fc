"""Long-running loops beside the dispatcher: upkeep (member counts, relay follow-up, monthly post)."""
