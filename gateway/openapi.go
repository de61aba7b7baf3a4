package gateway

import (
	_ "embed"
	"net/http"
)

// The OpenAPI 3.1 document of every route, and a page that renders it
// (hand-written HTML and JavaScript, embedded: no CDN at run time). A test
// (e2e/openapi_test.go) validates real responses of every served route
// against the document, so it cannot drift from the code.
var (
	//go:embed openapi/openapi.json
	openAPIDocument []byte
	//go:embed openapi/docs.html
	docsPage []byte
)

// OpenAPIDocument returns the embedded OpenAPI document (do not modify it).
func OpenAPIDocument() []byte { return openAPIDocument }

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	setJSONType(h)
	h.Set("Cache-Control", "no-cache")
	if s.sseOriginAllowed(r) {
		setCORS(w, r)
	}
	_, _ = w.Write(openAPIDocument)
}

func (s *Server) handleDocs(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline' 'self'")
	_, _ = w.Write(docsPage)
}
