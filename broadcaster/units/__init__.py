"""Administrative units: the tier schema, the dated unit tree, unit imports, name aliases and the group
naming convention."""
