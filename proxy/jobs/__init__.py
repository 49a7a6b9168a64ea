"""A job from the moment it has an id until its last event: running it, retrying it, keeping its
result.
"""
