"""Provider ``imagen``: Imagen on Vertex AI ``:predict``."""
