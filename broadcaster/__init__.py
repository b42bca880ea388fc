"""CNS Broadcaster core: units and tiers, groups, users, audit, dispatch planning and storage."""

__version__ = "0.1.0"
