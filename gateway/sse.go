package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/pulsar-relay/relay/auth"
	"hash/fnv"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// Server-Sent Events: GET /api/v1/sse?topics=a,b
//
// Each message is one event: "id: <resume id>", "event: message", "data:
// <stored message JSON>". The resume id names the stream's position in every
// topic, so Last-Event-ID (sent by EventSource when it reconnects) or
// ?since= resumes all of them with no gap and no duplicate:
//
//	v1;<topic>=<ms>-<seq>[.<epoch tag>];<topic>=...
//
// one entry per topic of the stream, in the order of ?topics. <ms>-<seq> is
// the last message id the stream delivered on that topic (or the topic's
// newest id when the stream opened, if none since); the epoch tag is 8 hex
// digits of the FNV-1a hash of the topic stream's epoch (absent when the
// store reports none). A topic whose epoch changed (its history is gone)
// restarts from the oldest retained message and is reported in a
// "truncated" event. ?since= also takes a bare message id, applied to every
// topic.
//
// Other events: "subscribed" (first, with the id of the starting positions),
// "truncated" ({"topics":[…]} whose resume point is older than what is
// retained), "relay-error" (an error frame: {"code","message"}). A
// ": keepalive" comment goes out every 15 s.
//
// A SUBSCRIPTION_ERROR ends the stream. The connection actor sends one
// when a topic cannot be served as asked: its replay failed (the store
// could not be read; the topic goes on live, and the next live message
// would move its position in the id past the messages never replayed, so
// a client resuming from it would lose them for good), or its subscription
// failed or stopped ("subscribe again", which a stream cannot do). So the
// sink sends the "relay-error" event, writes nothing after it (no id
// moves) and ends the stream; EventSource reconnects from the last id it
// received and the subscription and replay are tried again. Other error
// frames are reported and the stream goes on.

const sseIDVersion = "v1"

// ssePos is a stream's position in one topic.
type ssePos struct {
	topic string
	id    messages.ID
	epoch string // epoch tag; "" unknown
}

// epochTag is the short form of a stream epoch carried in SSE ids.
func epochTag(epoch string) string {
	if epoch == "" {
		return ""
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(epoch))
	return fmt.Sprintf("%08x", h.Sum32())
}

// appendSSEID appends the resume id of positions.
func appendSSEID(dst []byte, pos []ssePos) []byte {
	dst = append(dst, sseIDVersion...)
	for i := range pos {
		dst = append(dst, ';')
		dst = append(dst, pos[i].topic...)
		dst = append(dst, '=')
		dst = pos[i].id.AppendTo(dst)
		if pos[i].epoch != "" {
			dst = append(dst, '.')
			dst = append(dst, pos[i].epoch...)
		}
	}
	return dst
}

// parseSSEID parses a resume id (or, for ?since=, a bare message id, which
// applies to every topic and is returned under the key "").
func parseSSEID(s string) (map[string]ssePos, error) {
	out := map[string]ssePos{}
	if s == "" {
		return out, nil
	}
	if !strings.HasPrefix(s, sseIDVersion+";") && s != sseIDVersion {
		id, err := messages.ParseID(s)
		if err != nil {
			return nil, fmt.Errorf("%w: resume id %q is neither an SSE event id nor a message id", messages.ErrInvalid, s)
		}
		out[""] = ssePos{id: id}
		return out, nil
	}
	for _, part := range strings.Split(s, ";")[1:] {
		topic, rest, ok := strings.Cut(part, "=")
		if !ok || messages.ValidateTopic(topic) != nil {
			return nil, fmt.Errorf("%w: bad entry %q in resume id", messages.ErrInvalid, part)
		}
		idPart, tag, _ := strings.Cut(rest, ".")
		id, err := messages.ParseID(idPart)
		if err != nil {
			return nil, fmt.Errorf("resume id: %w", err)
		}
		out[topic] = ssePos{topic: topic, id: id, epoch: tag}
	}
	return out, nil
}

// sseOriginAllowed reports whether a browser request's Origin may use the
// relay: no Origin (not a browser), the relay's own origin, or a host
// matching RELAY_ALLOWED_ORIGINS (path.Match patterns, or "*"), as on /ws.
func (s *Server) sseOriginAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	host := strings.ToLower(u.Host)
	if host == strings.ToLower(r.Host) {
		return true
	}
	for _, p := range s.cfg.AllowedOrigins {
		if p == "*" {
			return true
		}
		if ok, _ := path.Match(strings.ToLower(p), host); ok {
			return true
		}
	}
	return false
}

// setCORS adds the CORS headers for an allowed cross-origin request.
func setCORS(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Add("Vary", "Origin")
	}
}

// handleSSEPreflight answers a CORS preflight for /api/v1/sse.
func (s *Server) handleSSEPreflight(w http.ResponseWriter, r *http.Request) {
	if !s.sseOriginAllowed(r) {
		s.writeError(w, r, fmt.Errorf("%w: origin %q is not allowed", messages.ErrForbidden, r.Header.Get("Origin")))
		return
	}
	setCORS(w, r)
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "GET")
	h.Set("Access-Control-Allow-Headers", "Last-Event-ID, Authorization, Cache-Control")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// sseTopics reads ?topics=a,b (the parameter may repeat).
func (s *Server) sseTopics(r *http.Request) ([]string, error) {
	var topics []string
	seen := make(map[string]bool)
	errCount := func() error {
		return fmt.Errorf("%w: \"topics\" must name 1..%d topics", messages.ErrInvalid, s.cfg.MaxTopicsPerSubscribe)
	}
	for _, v := range r.URL.Query()["topics"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t == "" || seen[t] {
				continue
			}
			if err := messages.ValidateTopic(t); err != nil {
				return nil, err
			}
			if len(topics) == s.cfg.MaxTopicsPerSubscribe { // refused before the rest is read
				return nil, errCount()
			}
			seen[t] = true
			topics = append(topics, t)
		}
	}
	if len(topics) == 0 {
		return nil, errCount()
	}
	return topics, nil
}

// handleSSE serves GET /api/v1/sse. The stream is a connection actor of
// transport "sse" whose sink writes events; it follows the slow-consumer
// policy like a WebSocket (a stream over its queue is ended) and each flush
// is bounded by WriteTimeout.
func (s *Server) handleSSE(w http.ResponseWriter, r *http.Request) {
	if !s.sseOriginAllowed(r) {
		s.writeError(w, r, fmt.Errorf("%w: origin %q is not allowed", messages.ErrForbidden, r.Header.Get("Origin")))
		return
	}
	setCORS(w, r)
	topics, err := s.sseTopics(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.authorizeTopics(r, auth.OpRead, topics); err != nil {
		s.writeError(w, r, err) // 403 before streaming
		return
	}
	resume := r.Header.Get("Last-Event-ID")
	if resume == "" {
		resume = r.URL.Query().Get("since")
	}
	given, err := parseSSEID(resume)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.draining.Load() {
		s.writeError(w, r, fmt.Errorf("%w: relay shutting down", messages.ErrUnavailable))
		return
	}
	if n := s.nconns.Add(1); n > int64(s.cfg.MaxConnections) {
		s.nconns.Add(-1)
		s.writeError(w, r, fmt.Errorf("%w: connection limit (%d) reached", messages.ErrUnavailable, s.cfg.MaxConnections))
		return
	}
	defer s.nconns.Add(-1)
	releaseSubs, err := s.holdSubscriptions(r, len(topics))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer releaseSubs()
	pos, frame, truncated, err := s.sseStart(r.Context(), topics, given)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	clearWriteDeadline(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	sink := &sseSink{w: w, rc: http.NewResponseController(w), timeout: s.cfg.WriteTimeout, pos: pos,
		truncated: truncated, closed: make(chan struct{})}
	for i := range pos {
		sink.index = append(sink.index, pos[i].topic)
	}
	sink.buf = append(sink.buf, "retry: 1000\n\n"...)
	conn, err := s.mgr.Connect(sink, "sse", nil) // holdSubscriptions took its quota
	if err != nil {
		_ = sink.flushLocked()
		return
	}
	s.cfg.Observer.Connections("sse", 1)
	defer s.cfg.Observer.Connections("sse", -1)
	conn.Subscribe(frame)
	tick := time.NewTicker(s.consumers.cfg.SSEKeepalive)
	defer tick.Stop()
	// A stream ends when its token expires (an SSE client cannot send a
	// fresh one in band): a relay-error event says why, and the client
	// reconnects with a new token and Last-Event-ID.
	// So does one whose login is revoked (a logout or a refresh-token
	// replay), as the login watcher finds.
	var expired <-chan time.Time
	var revoked <-chan struct{}
	if exp := tokenExpiry(r); !exp.IsZero() {
		t := time.NewTimer(time.Until(exp))
		defer t.Stop()
		expired = t.C
	}
	if p := principalOf(r.Context()); s.authOn() && p != nil && p.Family != "" {
		l := &sseLogin{p: p, ended: make(chan struct{})}
		s.sseLogins.Store(l, struct{}{})
		defer s.sseLogins.Delete(l)
		revoked = l.ended
	}
loop:
	for {
		select {
		case <-tick.C:
			sink.keepalive()
		case <-expired:
			sink.event("relay-error", map[string]string{"code": "UNAUTHORIZED", "message": "token expired"})
			break loop
		case <-revoked:
			sink.event("relay-error", map[string]string{"code": "UNAUTHORIZED", "message": "login revoked"})
			break loop
		case <-sink.closed:
			break loop
		case <-r.Context().Done():
			break loop
		case <-s.consumers.draining:
			break loop
		}
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout+5*time.Second)
	conn.Stop(stopCtx)
	cancel()
	sink.mu.Lock() // waits out a write in progress (bounded by its deadline)
	sink.gone = true
	sink.mu.Unlock()
}

// sseStart works out where the stream starts in each topic: at the resume
// point given for it (or from the oldest retained message, reported as
// truncated, when its epoch changed), else at the topic's newest id. It
// returns the positions, the subscribe frame and the epoch-truncated topics.
func (s *Server) sseStart(ctx context.Context, topics []string, given map[string]ssePos) ([]ssePos, messages.ClientFrame, []string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	frame := messages.ClientFrame{Type: messages.TypeSubscribe, Topics: topics, Since: make(map[string]string, len(topics))}
	pos := make([]ssePos, len(topics))
	var truncated []string
	tips, err := s.store.Tips(ctx, topics)
	if err != nil {
		return nil, frame, nil, err
	}
	all, hasAll := given[""]
	for i, t := range topics {
		g, ok := given[t]
		if !ok && hasAll {
			g, ok = all, true
		}
		tip := tips[t]
		tag := epochTag(tip.Epoch)
		at := tip.Last
		if ok {
			at = g.id
			// The id's tag names another incarnation of the stream. Either
			// the position is from an earlier one, whose messages after it
			// are gone: read this one from its oldest, reported truncated.
			// Or the tag is only stale: a stream that stayed open while
			// the topic's stream was recreated (FLUSHALL, a retention
			// expiry) gave this incarnation's ids with the tag it opened
			// with; then the position lies within what this incarnation
			// holds, and the client lacks only what follows it.
			if g.epoch != "" && tag != "" && g.epoch != tag && !s.holdsPosition(ctx, t, g.id, tip) {
				at = messages.ID{}
				truncated = append(truncated, t)
			}
		}
		pos[i] = ssePos{topic: t, id: at, epoch: tag}
		frame.Since[t] = at.String()
	}
	return pos, frame, truncated, nil
}

// holdsPosition reports whether id lies within what topic's stream holds
// now (from its oldest retained message to tip): an id this incarnation
// gave. A read that fails says no.
func (s *Server) holdsPosition(ctx context.Context, topic string, id messages.ID, tip persistence.Tip) bool {
	if tip.Last.Less(id) {
		return false
	}
	page, err := s.store.Range(ctx, topic, messages.ID{}, 1)
	return err == nil && len(page.Messages) > 0 && !id.Less(page.Messages[0].ID)
}

// sseSink is the actors.Sink of an SSE stream. Writes go into a buffer;
// Flush writes it out and flushes the response, bounded by a write deadline.
//
// Concurrency: Write and Flush come from the connection actor; keepalive from
// the handler goroutine; mu orders them. Close may come from anywhere.
type sseSink struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration

	closeOnce sync.Once
	closed    chan struct{}

	mu        sync.Mutex
	buf       []byte
	pos       []ssePos
	index     []string // topics in pos order
	truncated []string // epoch-truncated topics, reported with "subscribed"
	idBuf     []byte
	gone      bool // the handler returned: never touch w again
	ending    bool // a topic cannot be served: write nothing more, the stream ends
}

var _ actors.Sink = (*sseSink)(nil)

// Write implements actors.Sink: a frame becomes an event in the buffer.
func (k *sseSink) Write(frame []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ending {
		return nil // nothing after a SUBSCRIPTION_ERROR: it could move the id past a gap
	}
	switch {
	case bytes.HasPrefix(frame, messageFramePrefix):
		topic, id, ok := frameTopicAndID(frame)
		if !ok {
			return nil
		}
		if i := slices.Index(k.index, string(topic)); i >= 0 {
			if mid, err := messages.ParseID(string(id)); err == nil {
				k.pos[i].id = mid
			}
		}
		k.idBuf = appendSSEID(k.idBuf[:0], k.pos)
		k.buf = append(k.buf, "id: "...)
		k.buf = append(k.buf, k.idBuf...)
		k.buf = append(k.buf, "\nevent: message\ndata: "...)
		k.buf = appendStoredForm(k.buf, frame)
		k.buf = append(k.buf, "\n\n"...)
		if len(k.buf) >= sseWriteThrough {
			return k.writeOutLocked()
		}
	case bytes.HasPrefix(frame, subscribedPrefix):
		var f messages.SubscribedFrame
		_ = json.Unmarshal(frame, &f)
		k.idBuf = appendSSEID(k.idBuf[:0], k.pos)
		k.buf = append(k.buf, "id: "...)
		k.buf = append(k.buf, k.idBuf...)
		k.buf = append(k.buf, "\nevent: subscribed\ndata: "...)
		k.buf = append(k.buf, messages.EncodeFrame(map[string]any{"topics": f.Topics, "session_id": f.SessionID, "timestamp": f.Timestamp})...)
		k.buf = append(k.buf, "\n\n"...)
		trunc := k.truncated
		for _, t := range f.Truncated {
			if !slices.Contains(trunc, t) {
				trunc = append(trunc, t)
			}
		}
		if len(trunc) > 0 {
			k.buf = append(k.buf, "event: truncated\ndata: "...)
			k.buf = append(k.buf, messages.EncodeFrame(map[string]any{"topics": trunc})...)
			k.buf = append(k.buf, "\n\n"...)
		}
	case bytes.HasPrefix(frame, errorFramePrefix):
		var f messages.ErrorFrame
		_ = json.Unmarshal(frame, &f)
		k.buf = append(k.buf, "event: relay-error\ndata: "...)
		k.buf = append(k.buf, messages.EncodeFrame(map[string]string{"code": f.Code, "message": f.Message})...)
		k.buf = append(k.buf, "\n\n"...)
		if f.Code == messages.CodeSubscriptionError {
			// End the stream here, the event written out first (the
			// handler may return before the actor's Flush). No id after
			// it: the client resumes from the last good one.
			k.ending = true
			err := k.flushLocked()
			k.Close(actors.CloseGoingAway, "a topic cannot be served as asked")
			return err
		}
	}
	return nil
}

// Flush implements actors.Sink.
func (k *sseSink) Flush() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.flushLocked()
}

// sseWriteThrough bounds the buffer: events are written out once it holds
// this much, not only at the actor's Flush. An event is a frame plus an id
// that names every topic of the stream (up to MaxTopicsPerSubscribe names of
// up to 255 bytes), and a replay page or a drain writes hundreds of events
// before its Flush: tens of megabytes per stream unless written through.
const sseWriteThrough = 64 << 10

func (k *sseSink) flushLocked() error {
	err := k.writeOutLocked()
	if cap(k.buf) > sseWriteThrough { // do not keep a burst's buffer while idle
		k.buf = nil
	}
	return err
}

// writeOutLocked writes the buffer out and flushes the response, bounded by
// the write deadline, and keeps the buffer for what comes next.
func (k *sseSink) writeOutLocked() error {
	if k.gone {
		return http.ErrHandlerTimeout
	}
	if len(k.buf) == 0 {
		return nil
	}
	_ = k.rc.SetWriteDeadline(time.Now().Add(k.timeout))
	_, err := k.w.Write(k.buf)
	if err == nil {
		err = k.rc.Flush()
	}
	k.buf = k.buf[:0]
	if err != nil {
		k.Close(actors.CloseGoingAway, "write failed")
	}
	return err
}

// keepalive writes a comment line unless a write is in progress (then data
// is flowing anyway).
func (k *sseSink) keepalive() {
	if !k.mu.TryLock() {
		return
	}
	defer k.mu.Unlock()
	k.buf = append(k.buf, ": keepalive\n\n"...)
	_ = k.flushLocked()
}

// event writes one event of the relay's own (not from the actor) now.
func (k *sseSink) event(name string, data any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.buf = append(k.buf, "event: "...)
	k.buf = append(k.buf, name...)
	k.buf = append(k.buf, "\ndata: "...)
	k.buf = append(k.buf, messages.EncodeFrame(data)...)
	k.buf = append(k.buf, "\n\n"...)
	_ = k.flushLocked()
}

// Close implements actors.Sink: it ends the stream (the handler returns).
// SSE has no close code: a slow consumer's stream simply ends, and the
// client resumes with Last-Event-ID.
func (k *sseSink) Close(code int, reason string) {
	k.closeOnce.Do(func() { close(k.closed) })
}
