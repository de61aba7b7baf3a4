package gateway

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/go-chi/chi/v5"
)

// TestRouterServesHotRoutesWithoutChi: a POST to a hot route's exact path
// runs its handler inside the same middlewares, in order, without chi's
// route context (no copy of the request), and routeOf gives its path as
// chi would; the path's other methods, a trailing slash and an escaped
// form of the path are chi's.
func TestRouterServesHotRoutesWithoutChi(t *testing.T) {
	var order []string
	mark := func(name string) func(http.Handler) http.Handler {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				order = append(order, name)
				next.ServeHTTP(w, r)
			})
		}
	}
	r := &router{Mux: chi.NewRouter(), mw: chi.Middlewares{mark("outer"), mark("inner")}, hot: map[string]http.Handler{}}
	r.Use(r.mw...)
	var viaChi bool
	var route string
	r.hotPost("/hot", func(w http.ResponseWriter, req *http.Request) {
		viaChi = chi.RouteContext(req.Context()) != nil
		route = routeOf(req)
		w.WriteHeader(http.StatusCreated)
	})
	serve := func(h http.Handler, method, target string) int {
		order = nil
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
		return rec.Code
	}
	wantMiddlewares := []string{"outer", "inner"}

	if code := serve(r, http.MethodPost, "/hot"); code != http.StatusCreated || viaChi || route != "/hot" ||
		!slices.Equal(order, wantMiddlewares) {
		t.Fatalf("hot POST: status %d, via chi %v, route %q, middlewares %v; want 201 without chi, /hot, %v",
			code, viaChi, route, order, wantMiddlewares)
	}
	if code := serve(r.Mux, http.MethodPost, "/hot"); code != http.StatusCreated || !viaChi || route != "/hot" ||
		!slices.Equal(order, wantMiddlewares) {
		t.Fatalf("the same route through chi: status %d, via chi %v, route %q, middlewares %v", code, viaChi, route, order)
	}
	for _, c := range []struct {
		method, target string
		want           int
	}{
		{http.MethodGet, "/hot", http.StatusMethodNotAllowed},
		{http.MethodPost, "/hot/", http.StatusNotFound},
		{http.MethodPost, "/h%6Ft", http.StatusNotFound}, // chi routes on the escaped form
	} {
		if code := serve(r, c.method, c.target); code != c.want {
			t.Errorf("%s %s: status %d, want %d (chi's answer)", c.method, c.target, code, c.want)
		}
	}
}
