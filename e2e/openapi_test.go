package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/go-chi/chi/v5"

	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/persistence"
)

// exchange is one real request whose request and response are validated
// against the OpenAPI document.
type exchange struct {
	route   string // "METHOD /pattern" as chi registers it
	path    string // the concrete path and query
	body    any    // JSON body ([]byte: sent as is)
	headers []string
	// invalid: the request deliberately breaks the document (to reach an
	// error answer): only the response is validated.
	invalid bool
	// want: the status the relay must answer (0: any documented one, for
	// routes other branches own).
	want int
	// stream: read only the status and headers (SSE).
	stream bool
}

func loadOpenAPI(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(gateway.OpenAPIDocument())
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %s, want 3.1", doc.OpenAPI)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	return doc, router
}

var registerDecoders sync.Once

// TestOpenAPIValidatesEveryRoute sends real requests to every route the
// relay serves and validates each request and response against
// /openapi.json with kin-openapi's openapi3filter; a served route that is
// missing from the document, or that no exchange covers, fails the test
// (issue 10, acceptance 6).
func TestOpenAPIValidatesEveryRoute(t *testing.T) {
	registerDecoders.Do(func() {
		openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
		openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	})
	_, router := loadOpenAPI(t)
	// An auth service with auth off, so that the topic, grant and user
	// routes are served (and walked) too.
	store := persistence.NewMemoryStore(persistence.Limits{})
	svc, err := auth.New(context.Background(), auth.Config{BcryptCost: 4}, persistence.NewMemoryAuthStore(store), relaytest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	r := startConsumerRelay(t, relaytest.Options{Store: store, Gateway: gateway.Config{
		MaxMessageSize: 4096, AllowedOrigins: []string{"allowed.example"},
		Consumers: gateway.ConsumersConfig{PollMaxWaitersPerClient: 1},
		Auth:      svc,
	}})
	ctx := context.Background()

	// Served routes, from the router itself.
	served := map[string]bool{}
	routes, ok := r.App.Gateway.Handler().(chi.Routes)
	if !ok {
		t.Fatal("the gateway handler is not a chi router")
	}
	_ = chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		served[method+" "+route] = true
		return nil
	})
	if len(served) < 10 {
		t.Fatalf("walked only %d routes: %v", len(served), served)
	}

	// State the exchanges need.
	id := mustPublish(t, r.URL, "oa", map[string]any{"n": 1})
	mustPublish(t, r.URL, "oa", map[string]any{"n": 2})
	big := fmt.Sprintf(`{"topic":"oa","payload":{"pad":%q}}`, strings.Repeat("x", 5000))

	exchanges := []exchange{
		{route: "POST /api/v1/messages", path: "/api/v1/messages", body: map[string]any{"topic": "oa", "payload": map[string]any{"a": 1}, "metadata": map[string]string{"k": "v"}, "ttl": 60}, want: 201},
		{route: "POST /api/v1/messages", path: "/api/v1/messages", body: map[string]any{"topic": "oa", "payload": map[string]any{"a": 2}}, headers: []string{"Idempotency-Key", "oa-key-1"}, want: 201},
		{route: "POST /api/v1/messages", path: "/api/v1/messages", body: map[string]any{"topic": "bad topic", "payload": map[string]any{}}, invalid: true, want: 400},
		{route: "POST /api/v1/messages", path: "/api/v1/messages", body: []byte(big), invalid: true, want: 413},
		{route: "POST /api/v1/messages", path: "/api/v1/messages", body: []byte(`{"topic":"oa","payload":{}}`), headers: []string{"Content-Type", "text/plain"}, invalid: true, want: 415},
		{route: "POST /api/v1/messages/bulk", path: "/api/v1/messages/bulk", body: map[string]any{"messages": []any{
			map[string]any{"topic": "oa", "payload": map[string]any{"b": 1}}, map[string]any{"topic": "bad topic", "payload": map[string]any{}}}}, want: 207},
		{route: "POST /api/v1/messages/bulk", path: "/api/v1/messages/bulk", body: map[string]any{"messages": []any{}}, invalid: true, want: 400},
		{route: "GET /api/v1/topics/{topic}/messages", path: "/api/v1/topics/oa/messages?limit=1", want: 200},
		{route: "GET /api/v1/topics/{topic}/messages", path: "/api/v1/topics/oa/messages?order=desc&limit=1000", want: 200},
		{route: "GET /api/v1/topics/{topic}/messages", path: "/api/v1/topics/oa/messages?cursor=" + id, want: 200},
		{route: "GET /api/v1/topics/{topic}/messages", path: "/api/v1/topics/oa/messages?limit=0", invalid: true, want: 400},
		{route: "POST /api/v1/poll", path: "/api/v1/poll", body: map[string]any{"topics": []string{"oa"}, "since": map[string]string{"oa": "0-0"}}, want: 200},
		{route: "POST /api/v1/poll", path: "/api/v1/poll", body: map[string]any{"topics": []string{"oa-idle"}, "timeout": 1}, want: 200},
		{route: "POST /api/v1/poll", path: "/api/v1/poll", body: map[string]any{"topics": []string{}}, invalid: true, want: 400},
		{route: "POST /messages/poll", path: "/messages/poll", body: map[string]any{"topics": []string{"oa"}, "since": map[string]string{"oa": id}, "timeout": 5}, want: 200},
		{route: "GET /api/v1/sse", path: "/api/v1/sse?topics=oa,oa2", stream: true, want: 200},
		{route: "GET /api/v1/sse", path: "/api/v1/sse?topics=oa", headers: []string{"Origin", "http://allowed.example"}, stream: true, want: 200},
		{route: "GET /api/v1/sse", path: "/api/v1/sse?topics=oa", headers: []string{"Origin", "http://evil.example"}, want: 403},
		{route: "GET /api/v1/sse", path: "/api/v1/sse?topics=bad%20topic", want: 400},
		{route: "OPTIONS /api/v1/sse", path: "/api/v1/sse", headers: []string{"Origin", "http://allowed.example"}, want: 204},
		{route: "OPTIONS /api/v1/sse", path: "/api/v1/sse", headers: []string{"Origin", "http://evil.example"}, want: 403},
		{route: "GET /health", path: "/health", want: 200},
		{route: "GET /ready", path: "/ready", want: 200},
		{route: "HEAD /health", path: "/health", stream: true, want: 200},
		{route: "HEAD /ready", path: "/ready", stream: true, want: 200},
		{route: "GET /metrics", path: "/metrics", want: 200},
		{route: "GET /openapi.json", path: "/openapi.json", want: 200},
		{route: "GET /docs", path: "/docs", want: 200},
		{route: "GET /", path: "/", want: 200},
		{route: "GET /ui", path: "/ui", want: 200},
		// Routes other branches add (auth, topics, admin): validated when
		// served, whatever documented status they answer without a token.
		{route: "POST /auth/login", path: "/auth/login", body: map[string]any{"username": "nobody", "password": "wrong", "grant_type": "password"}},
		{route: "POST /auth/token/refresh", path: "/auth/token/refresh", body: map[string]any{"refresh_token": "not-a-token"}},
		{route: "POST /auth/logout", path: "/auth/logout", body: map[string]any{"refresh_token": "not-a-token"}},
		{route: "GET /auth/me", path: "/auth/me"},
		{route: "POST /api/v1/topics", path: "/api/v1/topics", body: map[string]any{"topic_name": "oa-created", "description": "d"}},
		{route: "GET /api/v1/topics", path: "/api/v1/topics"},
		{route: "GET /api/v1/topics/{topic}", path: "/api/v1/topics/oa-created"},
		{route: "PUT /api/v1/topics/{topic}", path: "/api/v1/topics/oa-created", body: map[string]any{"description": "e"}},
		{route: "POST /api/v1/topics/{topic}/grants", path: "/api/v1/topics/oa-created/grants", body: map[string]any{"user_id": "u-1", "permission": "read"}},
		{route: "POST /api/v1/topics/{topic}/grants", path: "/api/v1/topics/oa-created/grants", body: map[string]any{"user_id": "u-1", "permission": "own"}, invalid: true, want: 400},
		{route: "DELETE /api/v1/topics/{topic}/grants/{user}", path: "/api/v1/topics/oa-created/grants/u-1", want: 204},
		{route: "POST /api/v1/admin/users", path: "/api/v1/admin/users", body: map[string]any{"username": "oa-user", "password": "oa-password-1"}, want: 404}, // auth is off
		{route: "DELETE /api/v1/topics/{topic}", path: "/api/v1/topics/oa-created"},
		{route: "GET /api/v1/admin/policies", path: "/api/v1/admin/policies"},
		{route: "GET /api/v1/admin/policies", path: "/api/v1/admin/policies?topic=oa"},
		{route: "PUT /api/v1/admin/policies", path: "/api/v1/admin/policies", body: map[string]any{"version": 1, "topics": map[string]any{"oa*": map[string]any{"mailbox_size": 100}}}},
		{route: "PUT /api/v1/admin/policies", path: "/api/v1/admin/policies", body: map[string]any{"version": 1, "topics": map[string]any{"oa*": map[string]any{"mailbox_size": 0}}}, invalid: true, want: 400},
		{route: "GET /api/v1/admin/topics", path: "/api/v1/admin/topics"},
		{route: "GET /api/v1/admin/connections", path: "/api/v1/admin/connections"},
	}
	covered := map[string]bool{}
	for _, ex := range exchanges {
		if !served[ex.route] {
			continue
		}
		covered[ex.route] = true
		t.Run(strings.ReplaceAll(ex.route+" "+ex.path, "/", "_"), func(t *testing.T) {
			validateExchange(t, ctx, router, r.URL, ex)
		})
	}

	// The waiter cap's 429, and the WebSocket upgrade's 101.
	t.Run("poll 429", func(t *testing.T) {
		pctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			poll(t, pctx, r.URL+"/api/v1/poll", map[string]any{"topics": []string{"oa-hold"}, "timeout": 60})
		}()
		relaytest.Eventually(t, 5*time.Second, "a waiter", func() bool { return gauge(t, r.URL, `relay_connections{transport="poll"}`) == 1 })
		validateExchange(t, ctx, router, r.URL, exchange{route: "POST /api/v1/poll", path: "/api/v1/poll",
			body: map[string]any{"topics": []string{"oa-hold"}, "timeout": 1}, want: 429})
		cancel()
		<-done
	})
	if served["GET /ws"] {
		covered["GET /ws"] = true
		t.Run("ws 101", func(t *testing.T) {
			c, resp, err := websocket.Dial(ctx, r.WSURL, nil)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.CloseNow()
			req, _ := http.NewRequest(http.MethodGet, r.URL+"/ws", nil)
			validateResponse(t, router, req, nil, resp.StatusCode, resp.Header, nil, true)
		})
	}

	for route := range served {
		if strings.HasPrefix(route, "GET /debug/") {
			continue
		}
		method, pattern, _ := strings.Cut(route, " ")
		req, _ := http.NewRequest(method, r.URL+strings.ReplaceAll(pattern, "{topic}", "t"), nil)
		if _, _, err := router.FindRoute(req); err != nil {
			t.Errorf("served route %s is not in openapi.json: %v", route, err)
		}
		if !covered[route] {
			t.Errorf("served route %s has no exchange in this test: add one", route)
		}
	}
}

// validateExchange sends ex and validates its request (unless invalid) and
// its response.
func validateExchange(t *testing.T, ctx context.Context, router routers.Router, base string, ex exchange) {
	t.Helper()
	method, _, _ := strings.Cut(ex.route, " ")
	var body []byte
	if ex.body != nil {
		if b, ok := ex.body.([]byte); ok {
			body = b
		} else {
			body, _ = json.Marshal(ex.body)
		}
	}
	newReq := func() *http.Request {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(ctx, method, base+ex.path, rd)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(ex.headers); i += 2 {
			req.Header.Set(ex.headers[i], ex.headers[i+1])
		}
		return req
	}
	if !ex.invalid {
		req := newReq()
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatalf("%s: not in the document: %v", ex.path, err)
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			t.Fatalf("request %s %s does not match the document: %v", method, ex.path, err)
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := newReq().WithContext(rctx)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, ex.path, err)
	}
	defer resp.Body.Close()
	var got []byte
	if !ex.stream {
		got, _ = io.ReadAll(resp.Body)
	}
	if ex.want != 0 && resp.StatusCode != ex.want {
		t.Fatalf("%s %s: status %d (%s), want %d", method, ex.path, resp.StatusCode, got, ex.want)
	}
	validateResponse(t, router, newReq(), ex.headers, resp.StatusCode, resp.Header, got, ex.stream)
}

func validateResponse(t *testing.T, router routers.Router, req *http.Request, _ []string, status int, h http.Header, body []byte, skipBody bool) {
	t.Helper()
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s: not in the document: %v", req.Method, req.URL.Path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: h,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: skipBody}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Fatalf("response %d of %s %s does not match the document: %v\nbody: %.500s", status, req.Method, req.URL.RequestURI(), err, body)
	}
	if !slices.Contains([]int{101, 204}, status) && h.Get("X-Request-ID") == "" {
		t.Errorf("%s %s: no X-Request-ID", req.Method, req.URL.Path)
	}
}
