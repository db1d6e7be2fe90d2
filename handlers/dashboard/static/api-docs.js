// Renders the node's own OpenAPI document with Swagger UI (served by the node, no CDN).
"use strict";
(function () {
  const target = document.getElementById("api-docs");
  if (typeof window.SwaggerUIBundle !== "function") {
    target.textContent = "The API renderer is not installed on this node (run scripts/setup).";
    return;
  }
  target.textContent = "";
  window.SwaggerUIBundle({
    url: "/api/v1/openapi.json",
    domNode: target,
    deepLinking: true,
    tryItOutEnabled: false,
    // Sent to this node only; the CSP allows no other origin anyway.
    validatorUrl: null,
    layout: "BaseLayout",
  });
})();
