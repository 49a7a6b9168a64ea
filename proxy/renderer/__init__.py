"""The built-in renderer's drawing: a picture painted from the prompt with Pillow, in steps."""
