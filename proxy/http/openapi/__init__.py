"""The gateway's own OpenAPI 3.1 document (``GET /openapi.json``), built from its configuration.

OpenAI's images schemas it reuses are copied, MIT-licensed, in ``openai-images-schemas.json``.
"""

from proxy.http.openapi.document import (
    DOCUMENT_PATH,
    openapi_document,
    openapi_endpoint,
    openapi_route,
)

__all__ = ["DOCUMENT_PATH", "openapi_document", "openapi_endpoint", "openapi_route"]
