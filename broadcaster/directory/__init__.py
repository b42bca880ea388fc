"""Who and where: platform accounts, users with roles and scope, groups and their checks and events,
group suggestions, and the audit log."""
