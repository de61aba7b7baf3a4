package gateway

import (
	_ "embed"
	"net/http"

	"github.com/go-chi/chi/v5"
)

// The operator's page: one self-contained HTML file (plain HTML and JS, no
// third-party code, nothing loaded from elsewhere) embedded in the binary.
// It is public (it holds no data): everything it shows comes from the admin
// routes, /ready and /metrics, with the operator's token when auth is on.
//
//go:embed ui/index.html
var uiPage []byte

func (s *Server) uiRoutes(r chi.Router) {
	r.Get("/", s.handleUI)
	r.Get("/ui", s.handleUI)
}

func (s *Server) handleUI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	_, _ = w.Write(uiPage)
}
