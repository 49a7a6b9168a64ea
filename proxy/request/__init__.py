"""The image request: its fields declared once, parsed from JSON or a form, then bound to a model.
"""
