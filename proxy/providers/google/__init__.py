"""Google's image providers: ``gemini`` (native image models) and ``imagen`` (Vertex ``:predict``),
sharing addressing, auth and error mapping.
"""
