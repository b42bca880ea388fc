"""Storage: the App (engine, sessions, settings, transaction), dialect helpers, schema and migrations,
CSV reading and the OAuth token store. Knows nothing of dispatchers or the web."""
