"""Provider adapters: one module (or folder) per upstream wire format."""
