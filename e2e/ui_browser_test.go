package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/internal/browsertest"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/metrics"
)

// uiWait polls a JS expression in tab until it is true.
func uiWait(t *testing.T, tab context.Context, what, expr string) {
	t.Helper()
	relaytest.Eventually(t, 20*time.Second, what, func() bool {
		ok, err := chromedp.Run(tab, chromedp.Evaluate[bool](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return ok
	})
}

func uiText(t *testing.T, tab context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(tab, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func uiScreenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	shot, err := chromedp.Run(tab, chromedp.FullScreenshot(80))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("RELAY_TEST_SCREENSHOT_DIR") // to look at it; never committed
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// TestPageInBrowser drives the operator's page in headless Chromium (auth
// off): it tails ui.demo over the relay's SSE, publishes through the form,
// sees the message in the tail and the topic in the table, changes the
// topic's mailbox size through the page and sees the new value (reported
// by the topic actor), and saves a screenshot (issue 14, acceptance 3).
func TestPageInBrowser(t *testing.T) {
	b := browsertest.Shared(t)
	r := relaytest.Start(t, relaytest.Options{Metrics: metrics.New(10)})
	tab := b.Tab(t)
	if err := chromedp.Do(tab, chromedp.Navigate(r.URL+"/")); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	uiWait(t, tab, "the page to load its data", `!document.getElementById("app").hidden && document.getElementById("status").textContent.startsWith("updated")`)
	if !uiLoginHidden(t, tab) {
		t.Fatal("the page asks for a login with auth off")
	}

	if err := chromedp.Do(tab,
		chromedp.SetValue(chromedp.CSS("#tail-topic"), "ui.demo"),
		chromedp.Click(chromedp.CSS("#tail-start")),
	); err != nil {
		t.Fatal(err)
	}
	uiWait(t, tab, "the tail to open", `document.getElementById("tail-state").textContent === "tailing ui.demo"`)

	if err := chromedp.Do(tab,
		chromedp.SetValue(chromedp.CSS("#pub-topic"), "ui.demo"),
		chromedp.SetValue(chromedp.CSS("#pub-payload"), `{"greeting": "hello from the page"}`),
		chromedp.Click(chromedp.CSS("#pub-send")),
	); err != nil {
		t.Fatal(err)
	}
	uiWait(t, tab, "the publish to be stored", `document.getElementById("pub-result").textContent.startsWith("stored ")`)
	id := uiText(t, tab, "#pub-result")[len("stored "):]
	uiWait(t, tab, "the message in the tail", `[...document.querySelectorAll("#tail-list li")].some(li => li.textContent.includes("hello from the page"))`)
	if got := uiText(t, tab, "#tail-list li .id"); got != id {
		t.Fatalf("tail shows id %q, the publish answered %q", got, id)
	}
	row := `tr[data-topic="ui.demo"]`
	uiWait(t, tab, "ui.demo in the topic table with its SSE subscriber and last id",
		fmt.Sprintf(`(() => { const r = document.querySelector(%q); return !!r && r.children[2].textContent === "1" && r.children[6].textContent === %q })()`, row, id))

	if err := chromedp.Do(tab,
		chromedp.SetValue(chromedp.CSS(row+" .mailbox-input"), "4321"),
		chromedp.Click(chromedp.CSS(row+" .mailbox-set")),
	); err != nil {
		t.Fatal(err)
	}
	uiWait(t, tab, "the new mailbox size in the table", fmt.Sprintf(`(document.querySelector(%q) || {textContent: ""}).textContent === "4321"`, row+" .mailbox"))
	if v, ok := adminTopic(t, r.URL, "ui.demo"); !ok || v.Policy.Value("mailbox_size") != "4321" {
		t.Fatalf("the topic actor reports %+v", v)
	}
	uiWait(t, tab, "the totals", `document.getElementById("t-topics").textContent === "1" && document.getElementById("t-conns").textContent === "1" && document.getElementById("t-store").textContent === "ok" && /s$/.test(document.getElementById("t-p99").textContent)`)

	if err := chromedp.Do(tab,
		chromedp.SetValue(chromedp.CSS("#policy-topic"), "ui.demo"),
		chromedp.Click(chromedp.CSS("#policy-show")),
	); err != nil {
		t.Fatal(err)
	}
	uiWait(t, tab, "the effective policy", `document.getElementById("policy-effective").textContent.includes('"mailbox_size": 4321')`)
	uiScreenshot(t, tab, "ui.jpg")
}

func uiLoginHidden(t *testing.T, tab context.Context) bool {
	hidden, err := chromedp.Run(tab, chromedp.Evaluate[bool](`document.getElementById("login-box").hidden`))
	if err != nil {
		t.Fatal(err)
	}
	return hidden
}

// TestPageLoginInBrowser: with auth on the page asks for a login; a
// non-admin's login shows the refusal, the admin's shows the relay.
func TestPageLoginInBrowser(t *testing.T) {
	b := browsertest.Shared(t)
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: []byte("ui-secret-ui-secret-ui-secret-ui"),
		AdminUsername: "admin", AdminPassword: "admin-password"}})
	tab := b.Tab(t)
	if err := chromedp.Do(tab, chromedp.Navigate(r.URL+"/ui")); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	uiWait(t, tab, "the login form", `!document.getElementById("login-box").hidden && document.getElementById("app").hidden`)
	if err := chromedp.Do(tab,
		chromedp.SetValue(chromedp.CSS("#login-user"), "admin"),
		chromedp.SetValue(chromedp.CSS("#login-pass"), "admin-password"),
		chromedp.Click(chromedp.CSS("#login-submit")),
	); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("login error %q, status %q", uiText(t, tab, "#login-error"), uiText(t, tab, "#status"))
		}
	}()
	uiWait(t, tab, "the relay after login", `!document.getElementById("app").hidden && document.getElementById("status").textContent.startsWith("updated")`)
	uiScreenshot(t, tab, "ui-login.jpg")
}
