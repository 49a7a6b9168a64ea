// The API reference at /docs: Swagger UI (vendored, see vendored.json) reading the gateway's own
// /openapi.json. URLs are relative, so the page also works behind a proxy that adds a prefix.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: new URL(root.dataset.url, document.baseURI).href,
    domNode: root,
    deepLinking: true,
    // No call to the public validator (validator.swagger.io): nothing leaves this gateway.
    validatorUrl: null,
    displayRequestDuration: true,
    defaultModelsExpandDepth: 0,
    docExpansion: "list",
    filter: true,
    tryItOutEnabled: false,
    persistAuthorization: false,
  });
});
