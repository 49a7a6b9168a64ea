"""Models: what each accepts (rules), the shipped catalog, and the models this gateway serves."""
