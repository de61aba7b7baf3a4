package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/internal/slab"
	"github.com/pulsar-relay/relay/messages"
)

var (
	errNotFound = fmt.Errorf("%w: no such route", messages.ErrNotFound)
)

// readJSONBody checks the content type and reads a body of at most limit
// bytes, outside the MaxBodyBytesInFlight budget: for small bodies (poll,
// auth). Publish paths use Server.readBody.
func readJSONBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if !isJSON(r.Header.Get("Content-Type")) {
		return nil, fmt.Errorf("%w: Content-Type must be application/json", messages.ErrUnsupportedMedia)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, fmt.Errorf("%w: body over %d bytes", messages.ErrTooLarge, tooBig.Limit)
		}
		return nil, fmt.Errorf("%w: reading body: %v", messages.ErrInvalid, err)
	}
	return body, nil
}

// readBody checks the content type, reserves the body's bytes in the
// process-wide MaxBodyBytesInFlight budget, reads a body of at most limit
// bytes and, for a large one, waits for a decode slot (decodeSlot). The
// caller must call lease.release when it no longer holds the body (also
// after an error), and may call lease.decoded when it has decoded it.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, lease bodyLease, err error) {
	if !isJSON(r.Header.Get("Content-Type")) {
		return nil, lease, fmt.Errorf("%w: Content-Type must be application/json", messages.ErrUnsupportedMedia)
	}
	if r.ContentLength > limit {
		return nil, lease, fmt.Errorf("%w: body of %d bytes, the limit is %d", messages.ErrTooLarge, r.ContentLength, limit)
	}
	reserve := limit
	if r.ContentLength >= 0 {
		reserve = r.ContentLength
	}
	if s.inflight.Add(reserve) > s.cfg.MaxBodyBytesInFlight && reserve > 0 {
		s.inflight.Add(-reserve)
		s.lim.LimitHit("body_budget")
		return nil, lease, fmt.Errorf("%w: too many request bodies in flight", messages.ErrUnavailable)
	}
	s.lim.BodyBytesInFlight(reserve)
	lease = bodyLease{s: s, reserved: reserve}
	// The reservation is in the budget already, so a body of known length
	// gets its buffer at once: no regrowth, no garbage. Without a length the
	// buffer grows as the body arrives, up to limit. With a length, net/http
	// stops the body there itself (no MaxBytesReader needed).
	size, src := reserve, r.Body
	if r.ContentLength < 0 {
		size = min(reserve, 64<<10)
		src = http.MaxBytesReader(w, r.Body, limit)
	}
	buf := make([]byte, 0, size+1)
	body, err = readAllInto(buf, src)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, lease, fmt.Errorf("%w: body over %d bytes", messages.ErrTooLarge, tooBig.Limit)
		}
		return nil, lease, fmt.Errorf("%w: reading body: %v", messages.ErrInvalid, err)
	}
	if len(body) > largeBody {
		if err := s.decodeSlot(r.Context()); err != nil {
			return nil, lease, err
		}
		lease.slot = true
	}
	return body, lease, nil
}

// bodyLease is what readBody holds for a body: its bytes in the body budget
// and, for a large body, a decode slot.
type bodyLease struct {
	s        *Server // nil: nothing held
	reserved int64
	slot     bool
}

// decoded gives the decode slot back; release does too if decoded was not
// called.
func (l *bodyLease) decoded() {
	if l.slot {
		l.slot = false
		<-l.s.decoding
	}
}

// release gives back everything the lease holds.
func (l *bodyLease) release() {
	if l.s == nil {
		return
	}
	l.decoded()
	l.s.inflight.Add(-l.reserved)
	l.s.lim.BodyBytesInFlight(-l.reserved)
	l.s = nil
}

func readAllInto(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// ownPayload returns payload, decoded from body (a publish's body, a bulk
// request's item), as a message may keep it. The memory store and the hot
// ring copy a payload of at most slab.MaxCopy bytes into their own blocks,
// but keep a longer one as it is: cut out of a body much larger than itself
// (whitespace padding, say), it would hold the whole body while both charge
// it for its own length. Such a payload is copied. One that is most of its
// body, as in any ordinary publish, is kept with no copy: what it holds
// beyond its charge is at most an eighth of it plus 1 KiB.
func ownPayload(payload, body []byte) []byte {
	if len(payload) <= slab.MaxCopy || cap(body) <= len(payload)+len(payload)/8+1024 {
		return payload
	}
	return bytes.Clone(payload)
}

// largeBody is the body size from which decoding takes a decode slot.
const largeBody = 64 << 10

// decodeSlot waits for one of the slots that bound how many large bodies
// (over largeBody bytes) are decoded at once: half the CPUs, at least one. A
// flood of large publishes then cannot starve small requests, /health among
// them, of CPU. Waiting longer than the publish timeout (or past ctx) is
// ErrUnavailable (503). The slot is given back by bodyLease.decoded.
func (s *Server) decodeSlot(ctx context.Context) error {
	return s.takeSlot(ctx, s.decoding, "decode_slots", "too many large requests being decoded")
}

// takeSlot waits for one of slots (a bound on CPU-heavy work at once) for
// up to the publish timeout or until ctx ends; then it counts a limit hit
// of reason and fails with ErrUnavailable (503) saying what. The caller
// gives the slot back with <-slots.
func (s *Server) takeSlot(ctx context.Context, slots chan struct{}, reason, what string) error {
	wait := time.NewTimer(s.cfg.PublishTimeout)
	defer wait.Stop()
	select {
	case slots <- struct{}{}:
		return nil
	case <-wait.C:
	case <-ctx.Done():
	}
	s.lim.LimitHit(reason)
	return fmt.Errorf("%w: %s", messages.ErrUnavailable, what)
}

func (s *Server) publishLimits() messages.PublishLimits {
	return messages.PublishLimits{MaxTTL: s.cfg.MaxTTL}
}

// handlePublish stores one message: 201 only after the store took it.
func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	body, lease, err := s.readBody(w, r, s.cfg.MaxMessageSize)
	defer lease.release()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := messages.DecodePublishWith(body, s.publishLimits())
	lease.decoded()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	key, err := idempotencyKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.authorizeTopics(r, auth.OpWrite, []string{req.Topic}); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.cfg.Observer.Received(1)
	req.Payload = ownPayload(req.Payload, body)
	msg := req.Message(time.Now())
	if key != "" {
		msg.IdempotencyKey, msg.RequestHash, msg.Publisher = key, publishHash(req), clientIdentity(r)
	}
	stored, err := s.mgr.PublishWithin(r.Context(), msg, s.cfg.PublishTimeout)
	if err == nil && stored.Conflict {
		err = fmt.Errorf("%w: %s was used with another body", messages.ErrIdempotencyKeyReused, IdempotencyHeader)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// A Duplicate carries the first message's id and timestamp: the same
	// status and body as the first answer.
	setJSONType(w.Header())
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(stored.PublishResponse())
}

// handleBulk publishes up to messages.MaxBulk messages in one request and
// answers 207 with one result per message, in order: each "accepted" one is
// stored, each "rejected" one is not (bad item, full topic, store failure).
// The body is bounded by MaxBulkSize (413 over it), each item by
// MaxMessageSize (that item is rejected). A rejected item carries its topic
// when it could be read.
func (s *Server) handleBulk(w http.ResponseWriter, r *http.Request) {
	body, lease, err := s.readBody(w, r, s.cfg.MaxBulkSize)
	defer lease.release()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := messages.DecodeBulk(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	key, err := idempotencyKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var hash, publisher string
	if key != "" {
		hash, publisher = bulkHash(req.Messages), clientIdentity(r)
	}
	resp := messages.BulkResponse{Results: make([]messages.BulkResult, len(req.Messages))}
	var msgs []messages.Message
	var slots []int // msgs[k] answers resp.Results[slots[k]]
	now := time.Now()
	for i, raw := range req.Messages {
		var item messages.PublishRequest
		if int64(len(raw)) > s.cfg.MaxMessageSize {
			err = fmt.Errorf("%w: message over %d bytes", messages.ErrTooLarge, s.cfg.MaxMessageSize)
			item.Topic = messages.TopicOf(raw)
		} else {
			item, err = messages.DecodePublishWith(raw, s.publishLimits())
		}
		resp.Results[i].Topic = item.Topic
		if err != nil {
			resp.Results[i].Status, resp.Results[i].Error = "rejected", err.Error()
			continue
		}
		if err := s.authorizeTopics(r, auth.OpWrite, []string{item.Topic}); err != nil {
			_, code := statusOf(err)
			resp.Results[i].Status, resp.Results[i].Error = "rejected", code
			continue
		}
		item.Payload = ownPayload(item.Payload, raw)
		m := item.Message(now)
		if key != "" {
			m.IdempotencyKey, m.RequestHash, m.Publisher = bulkItemKey(key, i), hash, publisher
		}
		msgs = append(msgs, m)
		slots = append(slots, i)
	}
	lease.decoded() // decoding is over
	s.cfg.Observer.Received(len(msgs))
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
	defer cancel()
	conflicts := 0
	for k, res := range s.mgr.PublishAll(ctx, msgs) {
		out := &resp.Results[slots[k]]
		if res.Err == nil && res.Msg.Conflict {
			res.Err = messages.ErrIdempotencyKeyReused
		}
		if errors.Is(res.Err, messages.ErrIdempotencyKeyReused) {
			conflicts++
		}
		if res.Err != nil {
			_, code := statusOf(res.Err)
			out.Status, out.Error = "rejected", code
			continue
		}
		out.Status, out.MessageID = "accepted", res.Msg.ID.String()
	}
	resp.Summary.Total = len(resp.Results)
	for _, res := range resp.Results {
		if res.Status == "accepted" {
			resp.Summary.Accepted++
		}
	}
	resp.Summary.Rejected = resp.Summary.Total - resp.Summary.Accepted
	if conflicts > 0 && conflicts == len(msgs) { // the key was used for another bulk
		s.writeError(w, r, fmt.Errorf("%w: %s was used with another body", messages.ErrIdempotencyKeyReused, IdempotencyHeader))
		return
	}
	writeJSON(w, http.StatusMultiStatus, resp)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"status": "healthy", "timestamp": messages.FormatTime(time.Now()), "version": s.cfg.Version,
		"auth": map[bool]string{true: "on", false: "off"}[s.authOn()],
	})
}

// handleReady reports whether the relay can take publishes and deliver
// them: the store answers, the pub/sub link to other instances is up (a
// shared store only), and the relay is not shutting down.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{"storage": "ok"}
	ready := true
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		// The cause (an address, a dial error) is for the operator's log,
		// not for whoever can reach /ready.
		checks["storage"] = "unavailable"
		ready = false
		s.log.Debug("not ready: store", "err", err)
	}
	if s.mgr.Shared() {
		// Other instances' publishes reach this relay's subscribers through
		// the store's pub/sub link; while it is down they arrive late (each
		// topic catches up from its stream when it is back).
		checks["pubsub"] = "ok"
		if !s.mgr.FeedUp() {
			checks["pubsub"] = "down"
			ready = false
		}
	}
	if s.draining.Load() {
		checks["server"] = "shutting down"
		ready = false
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": ready, "checks": checks})
}
