package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// publishCmd is `relay publish TOPIC [JSON]`: one message from the argument,
// or one message per line of stdin (each line a JSON object payload) sent in
// bulk batches of up to 100. It prints each stored id on its own line, in
// input order.
//
// Every request carries an Idempotency-Key (one per batch), and a request
// that fails with a 5xx, a 429 or a connection error is retried with the
// same key, so a retry cannot store a message twice on a relay that honours
// the key. An item of a batch the relay rejected for a transient reason
// (SERVICE_UNAVAILABLE) is retried in a smaller batch with its own key after
// the rest of the batch was stored: such items may then be stored after
// later lines. Any other rejection stops the command (exit 1) after the
// batch it was in; nothing after that batch is sent.
func publishCmd(ctx context.Context, args []string, io cliIO) int {
	return finish(io.stderr, "publish", publish(ctx, args, io))
}

type publishOpts struct {
	topic    string
	ttl      int64
	metadata map[string]string
	batch    int
	linger   time.Duration
	retry    retryPolicy
}

func publish(ctx context.Context, args []string, io cliIO) error {
	fs := flag.NewFlagSet("relay publish", flag.ContinueOnError)
	fs.SetOutput(io.stderr)
	fs.Usage = func() {
		fmt.Fprintf(io.stderr, "usage: relay publish [flags] TOPIC [JSON]\n"+
			"  With JSON: publish that payload object. Without: publish each line of stdin (a JSON object payload),\n"+
			"  in bulk batches. Prints each stored message id on its own line.\n")
		fs.PrintDefaults()
	}
	cf := addClientFlags(fs, io)
	var meta multiFlag
	o := publishOpts{retry: defaultRetry}
	fs.Int64Var(&o.ttl, "ttl", 0, "message ttl in seconds (0: none)")
	fs.Var(&meta, "meta", "metadata KEY=VALUE (repeatable)")
	fs.IntVar(&o.batch, "batch", messages.MaxBulk, "most lines per bulk request (1..100)")
	fs.DurationVar(&o.linger, "linger", 20*time.Millisecond, "how long a partial batch waits for more stdin lines")
	fs.IntVar(&o.retry.attempts, "retries", defaultRetry.attempts-1, "retries of a failed request (5xx, 429, connection errors)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	o.retry.attempts++
	if len(pos) < 1 || len(pos) > 2 {
		fs.Usage()
		return usagef("want TOPIC and at most one JSON payload")
	}
	o.topic = pos[0]
	if err := messages.ValidateTopic(o.topic); err != nil {
		return usageError{err}
	}
	if o.ttl < 0 || o.batch < 1 || o.batch > messages.MaxBulk || o.retry.attempts < 1 {
		return usagef("--ttl must be >= 0, --batch 1..%d, --retries >= 0", messages.MaxBulk)
	}
	if len(meta) > 0 {
		o.metadata = map[string]string{}
		for _, kv := range meta {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return usagef("--meta %q: want KEY=VALUE", kv)
			}
			o.metadata[k] = v
		}
	}
	c, err := newClient(cf)
	if err != nil {
		return usageError{err}
	}
	defer c.close()
	if len(pos) == 2 {
		return publishOne(ctx, c, o, []byte(pos[1]), io)
	}
	return publishLines(ctx, c, o, io)
}

// item builds and checks one publish request for payload.
func (o *publishOpts) item(payload []byte) ([]byte, error) {
	req := messages.PublishRequest{Topic: o.topic, Payload: payload, Metadata: o.metadata}
	if o.ttl > 0 {
		req.TTL = &o.ttl
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(req)
}

func publishOne(ctx context.Context, c *client, o publishOpts, payload []byte, io cliIO) error {
	body, err := o.item(payload)
	if err != nil {
		return usageError{err}
	}
	_, resp, err := c.doRetry(ctx, o.retry, request{method: http.MethodPost, path: "/api/v1/messages",
		contentType: "application/json", body: body, header: http.Header{"Idempotency-Key": {newKey()}}},
		retryNotice(io))
	if err != nil {
		return err
	}
	var out struct {
		MessageID string `json:"message_id"`
	}
	if err := json.Unmarshal(resp, &out); err != nil || out.MessageID == "" {
		return fmt.Errorf("unexpected answer %q", resp)
	}
	_, err = fmt.Fprintln(io.stdout, out.MessageID)
	return err
}

func retryNotice(io cliIO) func(error, time.Duration) {
	return func(err error, wait time.Duration) {
		fmt.Fprintf(io.stderr, "relay publish: %v; retrying in %v\n", err, wait.Round(time.Millisecond))
	}
}

// line is one stdin line: its number (1-based) and text.
type line struct {
	n    int
	text []byte
}

// maxLineBytes bounds one stdin line (a payload larger than the relay's
// RELAY_MAX_MESSAGE_SIZE is refused by the relay anyway).
const maxLineBytes = 64 << 20

// readLines sends stdin's non-blank lines to out and closes it; a read
// error is sent to errc.
func readLines(ctx context.Context, r io.Reader, out chan<- line, errc chan<- error) {
	defer close(out)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	for n := 1; sc.Scan(); n++ {
		text := []byte(strings.TrimSpace(sc.Text()))
		if len(text) == 0 {
			continue
		}
		select {
		case out <- line{n, text}:
		case <-ctx.Done():
			return
		}
	}
	if err := sc.Err(); err != nil {
		errc <- fmt.Errorf("reading stdin: %w", err)
	}
}

func publishLines(ctx context.Context, c *client, o publishOpts, io cliIO) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lines := make(chan line, o.batch)
	readErr := make(chan error, 1)
	go readLines(ctx, io.stdin, lines, readErr)
	out := bufio.NewWriter(io.stdout)
	defer out.Flush()
	prog := newProgress(io, "published")
	defer prog.done()
	key := newKey()
	for batchNo := 1; ; batchNo++ {
		batch, more := nextBatch(ctx, lines, o.batch, o.linger)
		if len(batch) > 0 {
			ids, err := publishBatch(ctx, c, o, batch, fmt.Sprintf("%s-%d", key, batchNo), io)
			for _, id := range ids {
				fmt.Fprintln(out, id)
			}
			if ferr := out.Flush(); err == nil {
				err = ferr
			}
			prog.add(len(ids))
			if err != nil {
				return err
			}
		}
		if !more {
			break
		}
	}
	select {
	case err := <-readErr:
		return err
	default:
	}
	return ctx.Err()
}

// nextBatch collects up to n lines: it waits for the first, then takes what
// arrives within linger of it. more is false once stdin is done.
func nextBatch(ctx context.Context, lines <-chan line, n int, linger time.Duration) (batch []line, more bool) {
	select {
	case l, ok := <-lines:
		if !ok {
			return nil, false
		}
		batch = append(batch, l)
	case <-ctx.Done():
		return nil, false
	}
	t := time.NewTimer(linger)
	defer t.Stop()
	for len(batch) < n {
		select {
		case l, ok := <-lines:
			if !ok {
				return batch, false
			}
			batch = append(batch, l)
		case <-t.C:
			return batch, true
		case <-ctx.Done():
			return batch, false
		}
	}
	return batch, true
}

// publishBatch stores batch and returns the ids in line order. A line that
// is not a JSON object stops before anything of the batch is sent.
func publishBatch(ctx context.Context, c *client, o publishOpts, batch []line, key string, io cliIO) ([]string, error) {
	items := make([]json.RawMessage, len(batch))
	for i, l := range batch {
		item, err := o.item(l.text)
		if err != nil {
			return nil, usagef("stdin line %d: %v", l.n, strings.TrimPrefix(err.Error(), messages.ErrInvalid.Error()+": "))
		}
		items[i] = item
	}
	ids := make([]string, len(batch))
	pending := make([]int, len(batch)) // indexes into batch still to store
	for i := range pending {
		pending[i] = i
	}
	reqKey := key
	for round := 0; len(pending) > 0; round++ {
		if round > 0 {
			if round >= o.retry.attempts {
				return accepted(ids), fmt.Errorf("stdin line %d: the relay kept refusing it as unavailable", batch[pending[0]].n)
			}
			wait := backoff(o.retry.first, o.retry.max, round-1)
			fmt.Fprintf(io.stderr, "relay publish: %d messages refused as unavailable; retrying in %v\n", len(pending), wait.Round(time.Millisecond))
			if err := sleepCtx(ctx, wait); err != nil {
				return accepted(ids), err
			}
			reqKey = fmt.Sprintf("%s.r%d", key, round)
		}
		body := messages.BulkRequest{Messages: make([]json.RawMessage, len(pending))}
		for k, i := range pending {
			body.Messages[k] = items[i]
		}
		data, _ := json.Marshal(body)
		_, resp, err := c.doRetry(ctx, o.retry, request{method: http.MethodPost, path: "/api/v1/messages/bulk",
			contentType: "application/json", body: data, header: http.Header{"Idempotency-Key": {reqKey}}}, retryNotice(io))
		if err != nil {
			return accepted(ids), fmt.Errorf("stdin lines %d..%d: %w", batch[pending[0]].n, batch[pending[len(pending)-1]].n, err)
		}
		var br messages.BulkResponse
		if err := json.Unmarshal(resp, &br); err != nil || len(br.Results) != len(pending) {
			return accepted(ids), fmt.Errorf("unexpected bulk answer %.200q", resp)
		}
		var retry []int
		var refused []string
		for k, res := range br.Results {
			i := pending[k]
			switch {
			case res.Status == "accepted" && res.MessageID != "":
				ids[i] = res.MessageID
			case res.Error == "SERVICE_UNAVAILABLE" || res.Error == "RATE_LIMIT_EXCEEDED":
				retry = append(retry, i)
			default:
				refused = append(refused, fmt.Sprintf("stdin line %d refused: %s", batch[i].n, res.Error))
			}
		}
		if len(refused) > 0 {
			for _, r := range refused {
				fmt.Fprintf(io.stderr, "relay publish: %s\n", r)
			}
			return accepted(ids), fmt.Errorf("%d of %d messages refused; stopped", len(refused), len(batch))
		}
		pending = retry
	}
	return ids, nil
}

// accepted keeps the ids that are set, in order.
func accepted(ids []string) []string {
	var out []string
	for _, id := range ids {
		if id != "" {
			out = append(out, id)
		}
	}
	return out
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// progress prints a count and rate line on stderr, refreshed every 250 ms
// while it changes, when cliIO.progress allows (nothing when piped).
type progress struct {
	io      cliIO
	verb    string
	start   time.Time
	mu      sync.Mutex
	n       int
	printed int
	stop    chan struct{}
	stopped chan struct{}
}

func newProgress(io cliIO, verb string) *progress {
	p := &progress{io: io, verb: verb, start: time.Now()}
	if !io.progress() {
		return p
	}
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.print(false)
			}
		}
	}()
	return p
}

func (p *progress) add(n int) {
	p.mu.Lock()
	p.n += n
	p.mu.Unlock()
}

func (p *progress) print(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == p.printed && !final {
		return
	}
	p.printed = p.n
	rate := float64(p.n) / max(time.Since(p.start).Seconds(), 1e-3)
	fmt.Fprintf(p.io.stderr, "\r\033[K%s %d messages (%.0f/s)", p.verb, p.n, rate)
	if final {
		fmt.Fprintln(p.io.stderr)
	}
}

// done stops the refreshes and leaves the final line.
func (p *progress) done() {
	if p.stop == nil {
		return
	}
	close(p.stop)
	<-p.stopped
	if p.n > 0 {
		p.print(true)
	}
}
