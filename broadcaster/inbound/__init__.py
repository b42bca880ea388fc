"""What comes back: hook events stored and processed, tracked links, relay confirmations, privacy."""
