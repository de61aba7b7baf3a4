package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/browsertest"
	"github.com/pulsar-relay/relay/internal/relaytest"
)

// cutProxy forwards TCP connections to a target and can cut them all: it
// plays the network failing under a browser. While paused it accepts and
// closes at once. It notes whether a request carried Last-Event-ID.
type cutProxy struct {
	ln     net.Listener
	target string
	paused atomic.Bool
	resume atomic.Int32 // requests seen with Last-Event-ID
	mu     sync.Mutex
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.cut(); p.wg.Wait() })
	return p
}

func (p *cutProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.paused.Load() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { // client -> relay, noting Last-Event-ID
			defer p.wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if bytes.Contains(bytes.ToLower(buf[:n]), []byte("\nlast-event-id:")) {
						p.resume.Add(1)
					}
					if _, werr := up.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			up.Close()
		}()
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(c, up)
			c.Close()
		}()
	}
}

// cut closes every open connection.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

const ssePage = `<!doctype html><html><body><pre id="log"></pre><script>
window.got = []; window.ids = []; window.subscribed = 0; window.errors = 0;
const es = new EventSource(%q);
es.addEventListener("subscribed", () => { window.subscribed++; });
es.addEventListener("message", (e) => { const m = JSON.parse(e.data); window.got.push(m.payload.n); window.ids.push(e.lastEventId); });
es.onerror = () => { window.errors++; };
</script></body></html>`

// TestSSEInBrowser: Chromium opens an EventSource on the relay from another
// origin allowed by RELAY_ALLOWED_ORIGINS, receives messages, loses its
// connection (the test cuts it), reconnects by itself with Last-Event-ID,
// and ends with every message once, in order (issue 10, acceptance 4).
func TestSSEInBrowser(t *testing.T) {
	b := browsertest.Shared(t)
	r := startConsumerRelay(t, relaytest.Options{Gateway: gateway.Config{AllowedOrigins: []string{"localhost:*"}}})
	proxy := newCutProxy(t, strings.TrimPrefix(r.URL, "http://"))
	// The page comes from http://localhost:<port>; the relay is reached as
	// http://127.0.0.1:<proxy port>: another origin.
	page := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, ssePage, "http://"+proxy.addr()+"/api/v1/sse?topics=browser")
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	page.Listener = ln
	page.Start()
	t.Cleanup(page.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	tab := b.Tab(t)
	if err := chromedp.Do(tab, chromedp.Navigate("http://localhost:"+port+"/")); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	waitFor := func(what, expr string) {
		t.Helper()
		relaytest.Eventually(t, 15*time.Second, what, func() bool {
			ok, err := chromedp.Run(tab, chromedp.Evaluate[bool](expr))
			if err != nil {
				t.Fatalf("evaluate %s: %v", expr, err)
			}
			return ok
		})
	}
	waitFor("the stream to open", "window.subscribed === 1")
	n := 0
	publishN := func(k int) {
		for range k {
			n++
			mustPublish(t, r.URL, "browser", map[string]any{"n": n})
		}
	}
	publishN(5)
	waitFor("5 messages", "window.got.length === 5")

	// The network fails: the stream is cut and reconnects fail for a while;
	// meanwhile more messages are published.
	proxy.paused.Store(true)
	proxy.cut()
	waitFor("the browser to notice", "window.errors >= 1")
	publishN(5)
	proxy.paused.Store(false)
	waitFor("the browser to reconnect", "window.subscribed === 2")
	publishN(2)
	waitFor("12 messages", "window.got.length >= 12")

	got, err := chromedp.Run(tab, chromedp.Evaluate[[]int]("window.got"))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int, 12)
	for i := range want {
		want[i] = i + 1
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("page received %v, want %v", got, want)
	}
	if proxy.resume.Load() == 0 {
		t.Fatal("the browser reconnected without Last-Event-ID")
	}
	ids, err := chromedp.Run(tab, chromedp.Evaluate[[]string]("window.ids"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ids[len(ids)-1], "v1;browser=") {
		t.Fatalf("last event id %q", ids[len(ids)-1])
	}
}

// TestDocsRenderInBrowser: /docs renders the OpenAPI document in headless
// Chromium, every operation of the document on the page; the screenshot is
// written to the test's temp dir (issue 10, acceptance 6).
func TestDocsRenderInBrowser(t *testing.T) {
	b := browsertest.Shared(t)
	r := startConsumerRelay(t, relaytest.Options{})
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(gateway.OpenAPIDocument(), &doc); err != nil {
		t.Fatal(err)
	}
	ops := 0
	for _, item := range doc.Paths {
		ops += len(item)
	}
	tab := b.Tab(t)
	if err := chromedp.Do(tab, chromedp.Navigate(r.URL+"/docs"), chromedp.WaitVisible(chromedp.CSS(`body[data-rendered]`))); err != nil {
		t.Fatalf("render /docs: %v", err)
	}
	rendered, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.getAttribute("data-rendered")`))
	if err != nil {
		t.Fatal(err)
	}
	title, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById("title").textContent`))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(tab, chromedp.FullScreenshot(80))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if rendered != fmt.Sprint(ops) || !strings.HasPrefix(title, "Pulsar Relay") {
		t.Fatalf("page rendered %s operations (document has %d), title %q", rendered, ops, title)
	}
	dir := os.Getenv("RELAY_TEST_SCREENSHOT_DIR") // to look at it; never committed
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "docs.jpg")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	if len(shot) < 10_000 {
		t.Fatalf("screenshot of %d bytes: blank page?", len(shot))
	}
	t.Logf("screenshot %s (%d bytes)", path, len(shot))
}
