"""Infrastructure pieces of the model-serving stack, one ComponentResource per module."""
