package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/pulsar-relay/relay/messages"
)

// subscribeCmd is `relay subscribe TOPIC... [--from earliest|last|ID]
// [--cursor-file F]`: it prints every message of the topics as one JSON line
// (the stored-message shape) on stdout, until interrupted.
//
// Positions: at start each topic's point is the cursor file's entry, else
// --from resolved to a concrete id ("last" asks history for the newest id,
// "earliest" is 0-0), so every reconnect and every restart resumes with
// "since" from exactly the last printed message: no gap, no duplicate. A
// message whose id is not after its topic's point is dropped (never printed
// twice). With --cursor-file the points are written after each batch of
// printed messages: the batch's lines are built in memory, the new cursor
// is written to a synced temp file, the lines go to stdout in one write, and
// the temp file is renamed over the cursor file. Interrupted (SIGINT,
// SIGTERM), the command stops between batches, so the file always names the
// last printed message. Killed with SIGKILL, only a kill in the instant
// between that write and the rename prints the batch again on restart; a
// message is never lost.
//
// It reconnects by itself with exponential backoff (reset after each
// successful subscribe); it gives up only on an authentication or
// subscription refusal (exit 1).
func subscribeCmd(ctx context.Context, args []string, io cliIO) int {
	return finish(io.stderr, "subscribe", subscribe(ctx, args, io))
}

type subscriber struct {
	c          *client
	io         cliIO
	topics     []string
	cursorFile string
	maxBackoff time.Duration
	pos        map[string]string      // topic -> last printed (or start) id
	ids        map[string]messages.ID // parsed pos
	out        bytes.Buffer           // one batch's lines, written to stdout in one write
	prog       *progress
}

func subscribe(ctx context.Context, args []string, io cliIO) error {
	fs := flag.NewFlagSet("relay subscribe", flag.ContinueOnError)
	fs.SetOutput(io.stderr)
	fs.Usage = func() {
		fmt.Fprintf(io.stderr, "usage: relay subscribe [flags] TOPIC...\n"+
			"  Prints each message as one JSON line; resumes from --cursor-file when given.\n")
		fs.PrintDefaults()
	}
	cf := addClientFlags(fs, io)
	s := &subscriber{io: io}
	from := fs.String("from", "last", "where topics without a cursor start: last (new messages only), earliest, or a message id")
	fs.StringVar(&s.cursorFile, "cursor-file", "", "file that keeps the last printed id per topic, to resume after a restart")
	fs.DurationVar(&s.maxBackoff, "max-backoff", 10*time.Second, "longest wait between reconnects")
	topics, err := parseArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if len(topics) == 0 {
		fs.Usage()
		return usagef("want at least one TOPIC")
	}
	for _, t := range topics {
		if err := messages.ValidateTopic(t); err != nil {
			return usageError{err}
		}
		if !slices.Contains(s.topics, t) {
			s.topics = append(s.topics, t)
		}
	}
	if *from != messages.OffsetLast && *from != messages.OffsetEarliest {
		if _, err := messages.ParseID(*from); err != nil {
			return usagef("--from %q: want last, earliest or a message id", *from)
		}
	}
	if s.c, err = newClient(cf); err != nil {
		return usageError{err}
	}
	defer s.c.close()
	s.removeStaleTemps()
	if err := s.start(ctx, *from); err != nil {
		return err
	}
	s.prog = newProgress(io, "received")
	defer s.prog.done()
	return s.run(ctx)
}

// cursorDoc is the cursor file: the last printed id per topic. Topics of
// other runs are kept.
type cursorDoc struct {
	Since map[string]string `json:"since"`
}

// start sets every topic's point: the cursor file's, else --from's.
func (s *subscriber) start(ctx context.Context, from string) error {
	s.pos, s.ids = map[string]string{}, map[string]messages.ID{}
	if s.cursorFile != "" {
		data, err := os.ReadFile(s.cursorFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("cursor file: %w", err)
		default:
			var doc cursorDoc
			if err := json.Unmarshal(data, &doc); err != nil {
				return usagef("cursor file %s: not a cursor file: %v", s.cursorFile, err)
			}
			for t, id := range doc.Since {
				if err := s.set(t, id); err != nil {
					return usagef("cursor file %s: topic %q: %v", s.cursorFile, t, err)
				}
			}
		}
	}
	for _, t := range s.topics {
		if _, ok := s.pos[t]; ok {
			continue
		}
		id := from
		switch from {
		case messages.OffsetEarliest:
			id = messages.ID{}.String()
		case messages.OffsetLast:
			var err error
			for attempt := 0; ; attempt++ {
				if id, err = s.newest(ctx, t); err == nil {
					break
				}
				var ae *apiError
				if ctx.Err() != nil || (errors.As(err, &ae) && !ae.transient()) {
					return fmt.Errorf("topic %s: finding its newest message: %w", t, err)
				}
				wait := backoff(100*time.Millisecond, s.maxBackoff, attempt)
				fmt.Fprintf(s.io.stderr, "relay subscribe: topic %s: finding its newest message: %v; retrying in %v\n", t, err, wait.Round(time.Millisecond))
				if sleepCtx(ctx, wait) != nil {
					return ctx.Err()
				}
			}
		}
		if err := s.set(t, id); err != nil {
			return err
		}
	}
	return s.saveCursor()
}

func (s *subscriber) set(topic, id string) error {
	parsed, err := messages.ParseID(id)
	if err != nil {
		return err
	}
	s.pos[topic], s.ids[topic] = parsed.String(), parsed
	return nil
}

// newest is the id of topic's newest stored message, or 0-0 when it has
// none (then everything it gets is new).
func (s *subscriber) newest(ctx context.Context, topic string) (string, error) {
	var page struct {
		Messages []storedMessage `json:"messages"`
	}
	if err := s.c.getJSON(ctx, "/api/v1/topics/"+url.PathEscape(topic)+"/messages?order=desc&limit=1", &page); err != nil {
		return "", err
	}
	if len(page.Messages) == 0 {
		return messages.ID{}.String(), nil
	}
	id, err := messages.ParseID(page.Messages[0].MessageID)
	if err != nil {
		return "", fmt.Errorf("history answered a bad id: %w", err)
	}
	return id.String(), nil
}

// saveCursor writes the points atomically: temp file, fsync, rename.
func (s *subscriber) saveCursor() error {
	commit, err := s.prepareCursor()
	if err != nil {
		return err
	}
	return commit()
}

// prepareCursor writes the points to a synced temp file beside the cursor
// file; commit renames it into place. Between the two the caller writes
// stdout, so a kill at any point but the instant between that write and the
// rename prints nothing twice and loses nothing.
func (s *subscriber) prepareCursor() (commit func() error, err error) {
	if s.cursorFile == "" {
		return func() error { return nil }, nil
	}
	data, _ := json.Marshal(cursorDoc{Since: s.pos}) // pos holds the file's other topics too
	tmp, err := os.CreateTemp(filepath.Dir(s.cursorFile), "."+filepath.Base(s.cursorFile)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("cursor file: %w", err)
	}
	_, err = tmp.Write(append(data, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("cursor file: %w", err)
	}
	return func() error {
		if err := os.Rename(tmp.Name(), s.cursorFile); err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("cursor file: %w", err)
		}
		return nil
	}, nil
}

// removeStaleTemps deletes temp files a killed run left beside the cursor
// file.
func (s *subscriber) removeStaleTemps() {
	if s.cursorFile == "" {
		return
	}
	stale, _ := filepath.Glob(filepath.Join(filepath.Dir(s.cursorFile), "."+globEscape(filepath.Base(s.cursorFile))+".tmp*"))
	for _, f := range stale {
		os.Remove(f)
	}
}

func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fatalError ends the command: the relay refused the subscription or the
// credentials; reconnecting would not help.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }

// run connects, prints, and reconnects until ctx ends or a fatal refusal.
func (s *subscriber) run(ctx context.Context) error {
	for attempt := 0; ; {
		subscribed, err := s.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var fe fatalError
		if errors.As(err, &fe) {
			return fe.err
		}
		if subscribed {
			attempt = 0
		}
		wait := backoff(100*time.Millisecond, s.maxBackoff, attempt)
		attempt++
		fmt.Fprintf(s.io.stderr, "relay subscribe: %v; reconnecting in %v\n", err, wait.Round(time.Millisecond))
		if sleepCtx(ctx, wait) != nil {
			return nil
		}
	}
}

// frame is any server frame the subscriber reads.
type frame struct {
	Type      string          `json:"type"`
	MessageID string          `json:"message_id"`
	Topic     string          `json:"topic"`
	Payload   json.RawMessage `json:"payload"`
	Timestamp string          `json:"timestamp"`
	Metadata  json.RawMessage `json:"metadata"`
	Truncated []string        `json:"truncated"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
}

// storedMessage is what one output line holds (SPEC's stored message).
type storedMessage struct {
	MessageID string          `json:"message_id"`
	Topic     string          `json:"topic"`
	Payload   json.RawMessage `json:"payload"`
	Timestamp string          `json:"timestamp"`
	Metadata  json.RawMessage `json:"metadata"`
}

// readItem is a frame or the error that ended the connection.
type readItem struct {
	f   frame
	err error
}

const (
	frameQueue     = 256      // frames read ahead of printing
	wsReadLimit    = 64 << 20 // largest frame accepted
	subscribeLimit = 30 * time.Second
)

// session runs one connection: subscribe from the current points, then
// print batches until the connection ends. subscribed reports whether the
// relay accepted the subscription.
func (s *subscriber) session(ctx context.Context) (subscribed bool, err error) {
	dctx, cancel := context.WithTimeout(ctx, subscribeLimit)
	defer cancel()
	conn, resp, err := websocket.Dial(dctx, s.c.wsURL(), &websocket.DialOptions{HTTPHeader: s.c.authHeader(), HTTPClient: s.c.http})
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			return false, fatalError{fmt.Errorf("connect: refused with %d", resp.StatusCode)}
		}
		return false, fmt.Errorf("connect: %w", err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(wsReadLimit)
	since := make(map[string]string, len(s.topics))
	for _, t := range s.topics {
		since[t] = s.pos[t]
	}
	sub, _ := json.Marshal(map[string]any{"type": messages.TypeSubscribe, "topics": s.topics, "since": since})
	if err := conn.Write(dctx, websocket.MessageText, sub); err != nil {
		return false, fmt.Errorf("subscribe: %w", err)
	}
	for {
		f, err := readFrame(dctx, conn)
		if err != nil {
			return false, classify(fmt.Errorf("subscribe: %w", err))
		}
		if f.Type == messages.TypeError {
			err := fmt.Errorf("subscription refused: %s: %s", f.Code, f.Message)
			if f.Code == messages.CodeRateLimitExceeded {
				return false, err // worth another try later
			}
			return false, fatalError{err}
		}
		if f.Type == messages.TypeSubscribed {
			for _, t := range f.Truncated {
				if !s.ids[t].IsZero() {
					fmt.Fprintf(s.io.stderr, "relay subscribe: topic %s: messages after %s are no longer retained; going on from the oldest retained one\n", t, s.pos[t])
				}
			}
			break
		}
	}
	if s.io.progress() {
		fmt.Fprintf(s.io.stderr, "\r\033[Ksubscribed to %d topics\n", len(s.topics))
	}

	rctx, stopReader := context.WithCancel(ctx)
	items := make(chan readItem, frameQueue)
	readerDone := make(chan struct{})
	defer func() {
		stopReader()
		conn.CloseNow()
		<-readerDone
	}()
	go func() {
		defer close(readerDone)
		defer close(items)
		for {
			f, err := readFrame(rctx, conn)
			select {
			case items <- readItem{f, err}:
			case <-rctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		it, ok := <-items
		if !ok {
			return true, ctx.Err()
		}
		batch := []readItem{it}
	drain:
		for len(batch) < frameQueue && batch[len(batch)-1].err == nil {
			select {
			case it, ok := <-items:
				if !ok {
					break drain
				}
				batch = append(batch, it)
			default:
				break drain
			}
		}
		if err := s.print(batch); err != nil {
			return true, fatalError{err}
		}
		if last := batch[len(batch)-1]; last.err != nil {
			return true, classify(last.err)
		}
	}
}

// print writes the batch's messages, flushes stdout, then saves the cursor.
func (s *subscriber) print(batch []readItem) error {
	n := 0
	for _, it := range batch {
		f := it.f
		if it.err != nil {
			break
		}
		switch f.Type {
		case messages.TypeMessage:
		case messages.TypeError:
			fmt.Fprintf(s.io.stderr, "relay subscribe: relay reported %s: %s\n", f.Code, f.Message)
			continue
		default:
			continue
		}
		id, err := messages.ParseID(f.MessageID)
		last, known := s.ids[f.Topic]
		if err != nil || !known {
			fmt.Fprintf(s.io.stderr, "relay subscribe: ignoring a message with id %q on topic %q\n", f.MessageID, f.Topic)
			continue
		}
		if !last.Less(id) {
			continue // already printed (a replay overlapping what we have)
		}
		line, _ := json.Marshal(storedMessage{MessageID: f.MessageID, Topic: f.Topic, Payload: f.Payload, Timestamp: f.Timestamp, Metadata: f.Metadata})
		s.out.Write(line)
		s.out.WriteByte('\n')
		s.ids[f.Topic], s.pos[f.Topic] = id, id.String()
		n++
	}
	if n == 0 {
		return nil
	}
	commit, err := s.prepareCursor()
	if err != nil {
		return err
	}
	_, err = s.io.stdout.Write(s.out.Bytes())
	s.out.Reset()
	if err != nil {
		return fmt.Errorf("stdout: %w", err)
	}
	s.prog.add(n)
	return commit()
}

func readFrame(ctx context.Context, conn *websocket.Conn) (frame, error) {
	_, data, err := conn.Read(ctx)
	if err != nil {
		return frame{}, err
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		return frame{}, fmt.Errorf("bad frame %.100q: %w", data, err)
	}
	return f, nil
}

// classify makes a close for authentication or policy (1008) fatal; any
// other end of a connection is worth a reconnect.
func classify(err error) error {
	if websocket.CloseStatus(err) == websocket.StatusPolicyViolation {
		return fatalError{fmt.Errorf("closed by the relay: %w", err)}
	}
	return err
}
