"""The vocabulary every layer shares: errors, ports (the Sender protocol), table models, states, secrets,
settings and time. Imports nothing else of the project."""
