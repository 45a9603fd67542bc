// Renders the gateway's own OpenAPI document with the vendored Swagger UI
// (swagger-ui/README.md): no validator badge (it would call out), the base
// layout (no URL bar: this page shows this gateway's API only), a filter by tag.
window.ui = SwaggerUIBundle({
  url: '/api/openapi.json',
  dom_id: '#swagger-ui',
  layout: 'BaseLayout',
  presets: [SwaggerUIBundle.presets.apis],
  deepLinking: true,
  docExpansion: 'list',
  filter: true,
  validatorUrl: null,
  displayRequestDuration: true,
  defaultModelsExpandDepth: 0,
  persistAuthorization: false,
  withCredentials: false,
});
