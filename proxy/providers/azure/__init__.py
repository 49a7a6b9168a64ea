"""Provider ``azure``: Azure OpenAI deployments (the OpenAI dialect with Azure's addressing and
content filter).
"""
