"""Maintenance commands of the project (not imported by the Pulumi program)."""
