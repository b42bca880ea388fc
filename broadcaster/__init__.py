"""CNS Broadcaster: one core with pluggable platform adapters; the layers are its sub-packages (README,
Architecture)."""

__version__ = "0.1.0"
