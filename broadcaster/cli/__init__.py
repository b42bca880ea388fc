"""The ``cns`` command line."""
