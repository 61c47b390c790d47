"""The release check, packaged on its own as the hook Lambda's code (check.py and the smoke set)."""
