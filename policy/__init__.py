"""The model-serving policy pack: `rules/` holds the policies, `__main__.py` serves them to the Pulumi CLI."""
