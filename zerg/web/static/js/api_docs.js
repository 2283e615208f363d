// The API docs page (/api/docs): the vendored Swagger UI over the document the page embeds.
//
// The document comes inside the page rather than by a second request, so a
// server with a token shows it without the browser having to send one; the
// "Try it out" requests are same-origin calls to /api (the CSP's connect-src
// 'self'), and "Authorize" sets their bearer token. validatorUrl: null keeps
// Swagger UI from sending the document to its public validator.

const spec = JSON.parse(document.getElementById("openapi-document").textContent);

window.SwaggerUIBundle({
  spec,
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  defaultModelsExpandDepth: 0,
});
