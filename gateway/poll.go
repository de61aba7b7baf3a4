package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/pulsar-relay/relay/auth"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/messages"
)

// ConsumersConfig tunes long-poll and Server-Sent Events. The zero value of
// every field means its default, named in the field's comment.
type ConsumersConfig struct {
	// PollMaxWaitersPerClient bounds the long-poll waiters one client
	// identity (its remote IP until authentication exists) may hold at once
	// (RELAY_POLL_MAX_WAITERS_PER_CLIENT, default 50); over it a poll is
	// answered 429 with Retry-After.
	PollMaxWaitersPerClient int
	// SSEKeepalive is the interval of the ": keepalive" comment on an idle
	// SSE stream (default 15s), so proxies do not close it.
	SSEKeepalive time.Duration
}

func (c ConsumersConfig) withDefaults() ConsumersConfig {
	if c.PollMaxWaitersPerClient <= 0 {
		c.PollMaxWaitersPerClient = 50
	}
	if c.SSEKeepalive <= 0 {
		c.SSEKeepalive = 15 * time.Second
	}
	return c
}

// Poll limits of the wire contract.
const (
	pollMaxTopics      = 20
	pollMaxPerTopic    = 100
	pollDefaultTimeout = 30 * time.Second
	pollMaxTimeout     = 60 * time.Second

	// pollMaxBodyBytes bounds a poll request body. The largest valid body,
	// 20 topics of 255 characters each named again in "since" with an id
	// ("<20 digits>-<20 digits>"), plus "timeout", is about 11.3 KB as
	// usually written and about 62 KB with every topic character \u-escaped:
	// 64 KiB fits it, and a poll body never needs MaxMessageSize (it is
	// read outside the request-body budget). Over it: 413.
	pollMaxBodyBytes = 64 << 10
	// pollFirstRead is how many messages the catch-up's first store read
	// asks for; later reads ask for what the byte budget left is expected
	// to hold (pollReadSize), so that a backlog of large messages is not
	// read 101 at a time only to be cut by the budget.
	pollFirstRead = 16
	// pollMaxReads bounds the store reads of one topic's catch-up (a store
	// that skips expired entries returns short pages with a Next).
	pollMaxReads = 16
)

// consumers is the gateway's state for long-poll waiters and SSE streams.
//
// Concurrency: safe for concurrent use.
type consumers struct {
	cfg ConsumersConfig

	mu      sync.Mutex
	waiters map[string]int // client identity -> waiters held; at most MaxConnections entries

	drainOnce sync.Once
	draining  chan struct{} // closed when the relay begins to shut down
}

func newConsumers(cfg ConsumersConfig) *consumers {
	return &consumers{cfg: cfg.withDefaults(), waiters: make(map[string]int), draining: make(chan struct{})}
}

// drain ends every waiting poll (answered with what it has) and every SSE
// stream, so that http.Server.Shutdown does not wait for them.
func (c *consumers) drain() { c.drainOnce.Do(func() { close(c.draining) }) }

// acquireWaiter reserves a waiter place for client; release gives it back.
// It fails with ErrRateLimited when the client holds its maximum already.
func (c *consumers) acquireWaiter(client string) (release func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiters[client] >= c.cfg.PollMaxWaitersPerClient {
		return nil, fmt.Errorf("%w: at most %d concurrent long-polls per client", messages.ErrRateLimited, c.cfg.PollMaxWaitersPerClient)
	}
	c.waiters[client]++
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.waiters[client]--; c.waiters[client] <= 0 {
			delete(c.waiters, client)
		}
	}, nil
}

// clientIdentity is whom per-client limits count against: the
// authenticated principal, or the remote IP when anonymous.
func clientIdentity(r *http.Request) string { return identityOf(principalOf(r.Context()), r) }

// clearWriteDeadline lifts the server's per-request write deadline for a
// response that stays open on purpose (SSE), which bounds each of its
// flushes itself.
func clearWriteDeadline(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
}

// pollRequest is the body of POST /api/v1/poll, validated.
type pollRequest struct {
	messages.PollBody

	since   map[string]messages.ID
	timeout time.Duration
}

// decodePoll parses and validates a poll body; errors wrap ErrInvalid.
func decodePoll(body []byte) (pollRequest, error) {
	var req pollRequest
	var err error
	if req.PollBody, err = messages.DecodePollBody(body); err != nil {
		return req, err
	}
	seen := make(map[string]bool, len(req.Topics))
	topics := req.Topics[:0]
	for _, t := range req.Topics {
		if err := messages.ValidateTopic(t); err != nil {
			return req, err
		}
		if !seen[t] {
			seen[t] = true
			topics = append(topics, t)
		}
	}
	req.Topics = topics
	if n := len(req.Topics); n == 0 || n > pollMaxTopics {
		return req, fmt.Errorf("%w: \"topics\" must hold 1..%d distinct topics, not %d", messages.ErrInvalid, pollMaxTopics, n)
	}
	req.since = make(map[string]messages.ID, len(req.Since))
	for t, s := range req.Since {
		if !seen[t] {
			return req, fmt.Errorf("%w: since names topic %q, which is not in \"topics\"", messages.ErrInvalid, t)
		}
		id, err := messages.ParseID(s)
		if err != nil {
			return req, fmt.Errorf("since %q: %w", t, err)
		}
		req.since[t] = id
	}
	// A client that sends "since" has polled before: a topic of its poll
	// not named there is one it has seen nothing of yet, so it reads from
	// the oldest message retained, as the original relay answers
	// (pulsar-relay-client names only the topics it got a message from). A
	// message stored there between two polls would otherwise be lost. A
	// first poll, with no "since" at all, starts every topic now.
	if len(req.since) > 0 {
		for _, t := range req.Topics {
			if _, ok := req.since[t]; !ok {
				req.since[t] = messages.ID{}
			}
		}
	}
	req.timeout = pollDefaultTimeout
	if req.Timeout != nil {
		d := time.Duration(*req.Timeout * float64(time.Second))
		if d < time.Second || d > pollMaxTimeout {
			return req, fmt.Errorf("%w: timeout must be 1..60 seconds", messages.ErrInvalid)
		}
		req.timeout = d
	}
	return req, nil
}

// handlePoll serves POST /api/v1/poll and POST /messages/poll.
//
// It first reads the store after each "since" (up to 100 messages per topic
// and HistoryMaxBytes in all, see pollCatchUp) and answers at once when
// anything is there. Otherwise it registers a
// waiter: a connection actor of transport "poll" subscribed to every topic,
// at "since" where given (so a message stored between the read and the
// registration is replayed, not lost; with a "since" for some topics, the
// others from their oldest, see decodePoll), live when there is none. The
// first batch of messages the actor writes completes the answer; the
// timeout answers {"messages":[],"has_more":false}. A client that goes
// away frees its waiter at once.
func (s *Server) handlePoll(w http.ResponseWriter, r *http.Request) {
	body, err := readJSONBody(w, r, pollMaxBodyBytes)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := decodePoll(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.authorizeTopics(r, auth.OpRead, req.Topics); err != nil {
		s.writeError(w, r, err) // 403 before waiting
		return
	}
	// The answer may take up to the poll's timeout: extend the server's
	// write deadline past it (bounded, unlike SSE's).
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(req.timeout + s.cfg.WriteTimeout))
	msgs, hasMore, err := s.pollCatchUp(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(msgs) > 0 {
		writePollResponse(w, msgs, hasMore)
		return
	}
	since := req.since
	if len(since) == 0 {
		// Where a first poll starts, read before the waiter counts as
		// waiting (relay_connections{transport="poll"}).
		if since, err = s.pollStart(r.Context(), req.Topics); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	release, err := s.consumers.acquireWaiter(clientIdentity(r))
	if err != nil {
		h := w.Header()
		h.Set("X-RateLimit-Limit", strconv.Itoa(s.consumers.cfg.PollMaxWaitersPerClient))
		h.Set("X-RateLimit-Remaining", "0")
		h.Set("X-RateLimit-Reset", "1")
		s.writeError(w, r, err)
		return
	}
	defer release()
	if n := s.nconns.Add(1); n > int64(s.cfg.MaxConnections) {
		s.nconns.Add(-1)
		s.writeError(w, r, fmt.Errorf("%w: connection limit (%d) reached", messages.ErrUnavailable, s.cfg.MaxConnections))
		return
	}
	defer s.nconns.Add(-1)
	releaseSubs, err := s.holdSubscriptions(r, len(req.Topics))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer releaseSubs()
	sink := newPollSink()
	conn, err := s.mgr.Connect(sink, "poll", nil) // holdSubscriptions took its quota
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.cfg.Observer.Connections("poll", 1)
	defer s.cfg.Observer.Connections("poll", -1)
	frame := messages.ClientFrame{Type: messages.TypeSubscribe, Topics: req.Topics, Offset: messages.OffsetLast,
		Since: make(map[string]string, len(since))}
	for t, id := range since {
		frame.Since[t] = id.String()
	}
	conn.Subscribe(frame)
	timer := time.NewTimer(req.timeout)
	select {
	case <-sink.done:
	case <-timer.C:
	case <-r.Context().Done():
	case <-s.consumers.draining:
	}
	timer.Stop()
	// After Stop returns the actor writes nothing more, so what the sink
	// holds is final: a batch that raced the timeout is answered, not lost.
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	conn.Stop(stopCtx)
	cancel()
	if r.Context().Err() != nil {
		return // the client went away; nobody reads an answer
	}
	res := sink.result()
	if res.failed {
		s.writeError(w, r, fmt.Errorf("%w: a topic of this poll could not be served; poll again", messages.ErrUnavailable))
		return
	}
	writePollRawResponse(w, res.body, res.hasMore)
}

// pollStart is where a first poll (no "since") starts in each topic: after
// its newest message when the request arrived, as SSE starts. Subscribing
// at "now" instead took the tip when the topic actor got the subscribe,
// so a message stored after the request arrived but before that (on a
// shared Valkey, one published through another relay) was neither caught
// up nor delivered live: the poll answered [] at its timeout.
func (s *Server) pollStart(ctx context.Context, topics []string) (map[string]messages.ID, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	tips, err := s.store.Tips(ctx, topics)
	if err != nil {
		return nil, err
	}
	since := make(map[string]messages.ID, len(topics))
	for _, t := range topics {
		since[t] = tips[t].Last
	}
	return since, nil
}

// pollCatchUp reads, for each topic with a "since" in the request's order,
// what is stored after it: at most pollMaxPerTopic messages per topic and,
// over all topics, HistoryMaxBytes of encoded messages counted as a history
// page counts them (encodedSize; at least one message, so a reader always
// progresses). hasMore is set when more may be left: a topic had more than
// pollMaxPerTopic, the store stopped early, or the byte budget cut the
// answer.
//
// A cut never leaves a gap: the messages kept of a topic are a prefix of
// what follows its "since", in id order, so the client's next "since" for it
// (the id of the last message it got of that topic) resumes right after
// them; the topics after the cut return nothing, so their "since" stays.
func (s *Server) pollCatchUp(ctx context.Context, req pollRequest) ([]messages.Message, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	budget := s.cfg.HistoryMaxBytes
	var out []messages.Message
	var size int64 // encodedSize of out
	hasMore := false
	for _, t := range req.Topics {
		after, ok := req.since[t]
		if !ok {
			continue
		}
		kept := 0 // messages of t in out
	reads:
		for reads := 0; ; reads++ {
			if reads == pollMaxReads {
				hasMore = true // the store is skipping a long run: resume from here
				break
			}
			// Up to one message past pollMaxPerTopic, to learn whether
			// there is more.
			want := min(pollMaxPerTopic+1-kept, pollReadSize(budget-size, size, len(out)))
			page, err := s.store.Range(ctx, t, after, want)
			if err != nil {
				return nil, false, err
			}
			for i := range page.Messages {
				if kept == pollMaxPerTopic {
					hasMore = true
					break reads
				}
				m := &page.Messages[i]
				n := encodedSize(m)
				if len(out) > 0 && size+n > budget {
					// The same budget as a history page: stop here;
					// the rest of t, and the topics after it, come
					// with the next poll.
					s.lim.LimitHit("history_bytes")
					return out, true, nil
				}
				size += n
				out = append(out, *m)
				kept++
			}
			switch {
			case len(page.Messages) < want && page.Next.IsZero():
				break reads // the end of t
			case len(page.Messages) < want:
				after = page.Next // the store stopped early: go on from where it did
			default:
				after = page.Messages[len(page.Messages)-1].ID
			}
		}
	}
	return out, hasMore, nil
}

// pollReadSize is how many messages the catch-up's next store read asks
// for: pollFirstRead before anything is kept, then what the budget left
// (left bytes) is expected to hold at the average size of the kept
// messages, plus one to find the message that ends the answer (or that
// there is none).
func pollReadSize(left, size int64, kept int) int {
	if kept == 0 {
		return pollFirstRead
	}
	avg := max(size/int64(kept), 1)
	return int(min(max(left, 0)/avg, pollMaxPerTopic)) + 1
}

// writePollResponse answers {"messages":[msgs],"has_more":hasMore},
// streamed (writeMessages).
func writePollResponse(w http.ResponseWriter, msgs []messages.Message, hasMore bool) {
	writeMessages(w, msgs, `],"has_more":`+strconv.FormatBool(hasMore)+"}\n")
}

// writePollRawResponse answers {"messages":[list],"has_more":hasMore}; list
// is the comma-separated stored messages.
func writePollRawResponse(w http.ResponseWriter, list []byte, hasMore bool) {
	b := make([]byte, 0, len(list)+48)
	b = append(b, `{"messages":[`...)
	b = append(b, list...)
	b = append(b, `],"has_more":`...)
	b = strconv.AppendBool(b, hasMore)
	b = append(b, "}\n"...)
	setJSONType(w.Header())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// errPollComplete stops a poll waiter's actor once its answer is complete.
var errPollComplete = errors.New("long-poll answered")

// pollSink is the actors.Sink of a long-poll waiter. It keeps the message
// frames it is given, in the stored-message form, at most pollMaxPerTopic per
// topic, and completes on the first Flush that follows a message (or an error
// frame). Later writes fail, which stops the actor.
type pollSink struct {
	done chan struct{} // closed when complete or closed

	mu       sync.Mutex
	body     []byte // comma-separated stored messages
	perTopic map[string]int
	n        int
	hasMore  bool
	failed   bool // an error frame: a topic could not be served
	finished bool
}

var _ actors.Sink = (*pollSink)(nil)

func newPollSink() *pollSink { return &pollSink{done: make(chan struct{})} }

type pollResult struct {
	body    []byte
	hasMore bool
	failed  bool
}

// result returns what the sink collected; call it once the actor stopped.
func (p *pollSink) result() pollResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n > 0 {
		return pollResult{body: p.body, hasMore: p.hasMore}
	}
	return pollResult{failed: p.failed}
}

// Write implements actors.Sink.
func (p *pollSink) Write(frame []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return errPollComplete
	}
	switch {
	case bytes.HasPrefix(frame, messageFramePrefix):
		topic, _, ok := frameTopicAndID(frame)
		if !ok {
			return nil
		}
		if p.perTopic == nil {
			p.perTopic = make(map[string]int, 1)
		}
		if p.perTopic[string(topic)] >= pollMaxPerTopic {
			p.hasMore = true // the client's next poll reads the rest from the store
			return nil
		}
		p.perTopic[string(topic)]++
		if p.n > 0 {
			p.body = append(p.body, ',')
		}
		p.body = appendStoredForm(p.body, frame)
		p.n++
	case bytes.HasPrefix(frame, errorFramePrefix):
		p.failed = true
	}
	return nil
}

// Flush implements actors.Sink: the first burst holding a message (or an
// error) completes the answer.
func (p *pollSink) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return errPollComplete
	}
	if p.n == 0 && !p.failed {
		return nil
	}
	p.finished = true
	close(p.done)
	return errPollComplete
}

// Close implements actors.Sink (slow consumer, shutdown, actor stopped).
func (p *pollSink) Close(int, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.finished {
		p.finished = true
		close(p.done)
	}
}

var (
	messageFramePrefix = []byte(`{"type":"message",`)
	errorFramePrefix   = []byte(`{"type":"error",`)
	subscribedPrefix   = []byte(`{"type":"subscribed",`)
)

// appendStoredForm appends a "message" frame in the stored-message form
// (the same object without "type").
func appendStoredForm(dst, frame []byte) []byte {
	dst = append(dst, '{')
	return append(dst, frame[len(messageFramePrefix):]...)
}

// frameTopicAndID reads topic and message_id from a "message" frame made by
// messages.Message.AppendFrame: {"type":"message","message_id":"<id>","topic":"<topic>",...
// Ids and validated topics never need escaping, so no JSON decoding is needed.
func frameTopicAndID(frame []byte) (topic, id []byte, ok bool) {
	rest := frame[len(messageFramePrefix):]
	const idKey, topicKey = `"message_id":"`, `","topic":"`
	if !bytes.HasPrefix(rest, []byte(idKey)) {
		return nil, nil, false
	}
	rest = rest[len(idKey):]
	i := bytes.IndexByte(rest, '"')
	if i < 0 {
		return nil, nil, false
	}
	id, rest = rest[:i], rest[i:]
	if !bytes.HasPrefix(rest, []byte(topicKey)) {
		return nil, nil, false
	}
	rest = rest[len(topicKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil, nil, false
	}
	return rest[:j], id, true
}

// consumerRoutes registers long-poll (hot routes), SSE and the API
// document.
func (s *Server) consumerRoutes(r *router) {
	r.hotPost("/api/v1/poll", s.handlePoll)
	r.hotPost("/messages/poll", s.handlePoll)
	r.Get("/api/v1/sse", s.handleSSE)
	r.Options("/api/v1/sse", s.handleSSEPreflight)
	r.Get("/openapi.json", s.handleOpenAPI)
	r.Get("/docs", s.handleDocs)
}
