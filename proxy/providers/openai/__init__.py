"""Provider ``openai``: OpenAI and any OpenAI-compatible server. Its wire format and error mapping
are the OpenAI dialect that ``azure`` and ``xai`` share.
"""
