// Package browsertest runs Debian's headless Chromium for end-to-end tests,
// through chromedp. A test package starts one browser (Shared, on first use)
// and closes it in TestMain with CloseShared; each test opens its own tab.
//
// The browser is started with a fresh user-data dir and with every flag that
// makes it reach the network by itself turned off, so it talks only to the
// servers the tests start on 127.0.0.1.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// ExecPath is the browser binary (Debian's chromium package).
const ExecPath = "/usr/bin/chromium"

// Browser is one running Chromium.
type Browser struct {
	dir         string
	cancelAlloc context.CancelFunc
	ctx         context.Context // the browser's first tab; new tabs derive from it
	cancel      context.CancelFunc
}

// Start launches a headless Chromium with a fresh user-data dir.
func Start() (*Browser, error) {
	path := ExecPath
	if _, err := os.Stat(path); err != nil {
		p, lerr := exec.LookPath("chromium")
		if lerr != nil {
			return nil, fmt.Errorf("browsertest: no chromium at %s or on PATH (apt-get install chromium): %w", ExecPath, err)
		}
		path = p
	}
	dir, err := os.MkdirTemp("", "browsertest-*")
	if err != nil {
		return nil, err
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(dir),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int]("1")); err != nil { // starts the browser
		cancel()
		cancelAlloc()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("browsertest: start chromium: %w", err)
	}
	return &Browser{dir: dir, cancelAlloc: cancelAlloc, ctx: ctx, cancel: cancel}, nil
}

// Tab opens a new tab, closed in t's cleanup.
func (b *Browser) Tab(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int]("1")); err != nil {
		t.Fatalf("browsertest: new tab: %v", err)
	}
	return ctx
}

// Close stops the browser and removes its user-data dir.
func (b *Browser) Close() {
	b.cancel()
	b.cancelAlloc()
	_ = os.RemoveAll(b.dir)
}

var (
	sharedMu  sync.Mutex
	shared    *Browser
	sharedErr error
)

// Shared returns the test package's browser, starting it on first use; a
// browser that cannot start fails the test (it never skips).
func Shared(t testing.TB) *Browser {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = Start()
	}
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

// CloseShared stops the shared browser, if it was started. Call it from
// TestMain after m.Run.
func CloseShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		shared.Close()
		shared = nil
	}
	sharedErr = errors.New("browsertest: the shared browser was closed")
}
