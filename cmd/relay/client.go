package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// cliIO is what a client subcommand reads and writes; main passes the
// process's, tests pass buffers.
type cliIO struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	env            func(string) (string, bool)
}

func stdIO(stdout, stderr io.Writer) cliIO {
	return cliIO{stdin: os.Stdin, stdout: stdout, stderr: stderr, env: osEnviron}
}

// progress reports whether progress lines belong on stderr: only when it is
// a terminal and stdout is not (output piped or redirected while a person
// watches), so machine-readable output never mixes with them.
func (io cliIO) progress() bool {
	errF, ok := io.stderr.(*os.File)
	if !ok || !isTerminal(errF) {
		return false
	}
	outF, ok := io.stdout.(*os.File)
	return !ok || !isTerminal(outF)
}

// clientFlags are the flags every client subcommand takes.
type clientFlags struct {
	url, token string
}

// Client defaults. RELAY_URL and RELAY_TOKEN are the CLI's own variables,
// read here (they are not server settings, so not in config.go's table).
const defaultRelayURL = "http://127.0.0.1:8080"

// requestTimeout bounds one HTTP request and its answer.
const requestTimeout = 30 * time.Second

func addClientFlags(fs *flag.FlagSet, io cliIO) *clientFlags {
	cf := &clientFlags{}
	u, ok := io.env("RELAY_URL")
	if !ok || u == "" {
		u = defaultRelayURL
	}
	tok, _ := io.env("RELAY_TOKEN")
	fs.StringVar(&cf.url, "url", u, "relay base URL (RELAY_URL)")
	fs.StringVar(&cf.token, "token", tok, "bearer token sent as Authorization (RELAY_TOKEN)")
	return cf
}

// parseArgs parses flags that may come before, between or after the
// positional arguments ("relay subscribe a b --from earliest") and returns
// the positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// client talks to one relay over HTTP.
type client struct {
	base  *url.URL
	token string
	http  *http.Client
}

func newClient(cf *clientFlags) (*client, error) {
	u, err := url.Parse(strings.TrimRight(cf.url, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--url %q: want http://host:port or https://host", cf.url)
	}
	return &client{base: u, token: cf.token, http: &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second},
	}}, nil
}

// close releases idle connections.
func (c *client) close() { c.http.CloseIdleConnections() }

func (c *client) endpoint(path string) string { return c.base.String() + path }

// wsURL is the relay's WebSocket endpoint.
func (c *client) wsURL() string {
	u := *c.base
	if u.Scheme == "https" {
		u.Scheme = "wss"
	} else {
		u.Scheme = "ws"
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/ws"
	return u.String()
}

func (c *client) authHeader() http.Header {
	h := http.Header{}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	return h
}

// apiError is a non-2xx answer from the relay (its SPEC error body).
type apiError struct {
	Status     int
	Code       string
	Message    string
	RequestID  string
	RetryAfter time.Duration
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("relay answered %d", e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.RequestID != "" {
		msg += " (request " + e.RequestID + ")"
	}
	return msg
}

// transient reports whether retrying may succeed: 5xx and 429.
func (e *apiError) transient() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests
}

// request is one HTTP call.
type request struct {
	method, path, contentType string
	body                      []byte
	header                    http.Header
}

// do sends req once and returns the status and body of a 2xx answer, or an
// *apiError, or the transport error.
func (c *client) do(ctx context.Context, req request) (int, []byte, error) {
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, c.endpoint(req.path), body)
	if err != nil {
		return 0, nil, err
	}
	hr.Header = c.authHeader()
	for k, v := range req.header {
		hr.Header[k] = v
	}
	if req.contentType != "" {
		hr.Header.Set("Content-Type", req.contentType)
	}
	hr.Header.Set("Accept", "application/json")
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.http.Do(hr.WithContext(ctx))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: reading the answer: %w", req.method, req.path, err)
	}
	if resp.StatusCode >= 300 {
		e := &apiError{Status: resp.StatusCode}
		var eb messages.ErrorBody
		if json.Unmarshal(data, &eb) == nil {
			e.Code, e.Message, e.RequestID = eb.Error, eb.Message, eb.RequestID
		} else {
			e.Message = strings.TrimSpace(string(data))
			if len(e.Message) > 200 {
				e.Message = e.Message[:200] + "..."
			}
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			e.RetryAfter = time.Duration(min(s, 60)) * time.Second
		}
		return resp.StatusCode, nil, e
	}
	return resp.StatusCode, data, nil
}

// retryPolicy bounds the retries of one request.
type retryPolicy struct {
	attempts   int           // total tries, at least 1
	first, max time.Duration // backoff
}

var defaultRetry = retryPolicy{attempts: 6, first: 200 * time.Millisecond, max: 5 * time.Second}

// doRetry sends req until it gets an answer that is not transient (see
// apiError.transient; connection errors are transient too) or the attempts
// are spent. The caller makes a retried publish safe with an
// Idempotency-Key in req.header. notify, when set, hears of each retry.
func (c *client) doRetry(ctx context.Context, rp retryPolicy, req request, notify func(err error, wait time.Duration)) (int, []byte, error) {
	var lastErr error
	for attempt := 0; attempt < max(rp.attempts, 1); attempt++ {
		if attempt > 0 {
			wait := backoff(rp.first, rp.max, attempt-1)
			var ae *apiError
			if errors.As(lastErr, &ae) && ae.RetryAfter > wait {
				wait = ae.RetryAfter
			}
			if notify != nil {
				notify(lastErr, wait)
			}
			if err := sleepCtx(ctx, wait); err != nil {
				return 0, nil, lastErr
			}
		}
		status, body, err := c.do(ctx, req)
		if err == nil {
			return status, body, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			return 0, nil, err
		}
		var ae *apiError
		if errors.As(err, &ae) && !ae.transient() {
			return status, nil, err
		}
	}
	return 0, nil, lastErr
}

// backoff is first*2^n capped at max, with ±20% jitter.
func backoff(first, maxWait time.Duration, n int) time.Duration {
	d := float64(first) * math.Pow(2, float64(min(n, 30)))
	d = min(d, float64(maxWait))
	d *= 0.8 + 0.4*mrand.Float64()
	return time.Duration(d)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// newKey is a random Idempotency-Key prefix.
func newKey() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// getJSON GETs path (retrying transient failures) and decodes the answer.
func (c *client) getJSON(ctx context.Context, path string, into any) error {
	_, body, err := c.doRetry(ctx, retryPolicy{attempts: 3, first: 200 * time.Millisecond, max: 2 * time.Second},
		request{method: http.MethodGet, path: path}, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("GET %s: unexpected answer: %w", path, err)
	}
	return nil
}

// exitCode maps a command's error to an exit status: 2 for bad usage or
// input, 1 for anything the relay refused or could not be reached for.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// finish prints err (if any) prefixed with the command and returns the exit
// status.
func finish(stderr io.Writer, cmd string, err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	}
	fmt.Fprintf(stderr, "relay %s: %v\n", cmd, err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}
