"""Image edits: input images, and reading them from multipart or JSON requests."""
