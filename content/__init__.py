"""Content: items, immutable revisions, attachments, the approval workflow and the Markdown subset."""
