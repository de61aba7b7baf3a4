package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

var (
	errNotFound = fmt.Errorf("%w: no such route", messages.ErrNotFound)
	errMethod   = fmt.Errorf("%w: method not allowed on this route", messages.ErrNotFound)
)

// readJSONBody checks the content type and reads a body of at most limit
// bytes.
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

// handlePublish stores one message: 201 only after the store took it.
func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	body, err := readJSONBody(w, r, s.cfg.MaxMessageSize)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := messages.DecodePublish(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.authorizeTopics(r, auth.OpWrite, []string{req.Topic}); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.cfg.Observer.Received(1)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
	defer cancel()
	stored, err := s.mgr.Publish(ctx, req.Message(time.Now()))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(stored.AppendPublishResponse(make([]byte, 0, 128)))
}

// handleBulk publishes up to messages.MaxBulk messages in one request and
// answers 207 with one result per message, in order: each "accepted" one is
// stored, each "rejected" one is not (bad item, full topic, store failure).
// The body may be MaxBulk times the single-message limit.
func (s *Server) handleBulk(w http.ResponseWriter, r *http.Request) {
	body, err := readJSONBody(w, r, s.cfg.MaxMessageSize*messages.MaxBulk)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := messages.DecodeBulk(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := messages.BulkResponse{Results: make([]messages.BulkResult, len(req.Messages))}
	var msgs []messages.Message
	var slots []int // msgs[k] answers resp.Results[slots[k]]
	now := time.Now()
	for i, raw := range req.Messages {
		item, err := messages.DecodePublish(raw)
		resp.Results[i].Topic = item.Topic
		if err == nil && int64(len(raw)) > s.cfg.MaxMessageSize {
			err = fmt.Errorf("%w: message over %d bytes", messages.ErrTooLarge, s.cfg.MaxMessageSize)
		}
		if err != nil {
			resp.Results[i].Status, resp.Results[i].Error = "rejected", err.Error()
			continue
		}
		if err := s.authorizeTopics(r, auth.OpWrite, []string{item.Topic}); err != nil {
			_, code := statusOf(err)
			resp.Results[i].Status, resp.Results[i].Error = "rejected", code
			continue
		}
		msgs = append(msgs, item.Message(now))
		slots = append(slots, i)
	}
	s.cfg.Observer.Received(len(msgs))
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
	defer cancel()
	for k, res := range s.mgr.PublishAll(ctx, msgs) {
		out := &resp.Results[slots[k]]
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
	writeJSON(w, http.StatusMultiStatus, resp)
}

// handleHistory pages through a topic's stored messages.
func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	topic := chi.URLParam(r, "topic")
	if err := messages.ValidateTopic(topic); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.authorizeTopics(r, auth.OpRead, []string{topic}); err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.writeError(w, r, fmt.Errorf("%w: limit must be 1..1000", messages.ErrInvalid))
			return
		}
		limit = n
	}
	var cursor messages.ID
	if v := cmp.Or(q.Get("after"), q.Get("cursor")); v != "" {
		id, err := messages.ParseID(v)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		cursor = id
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
	defer cancel()
	var msgs []messages.Message
	var err error
	switch q.Get("order") {
	case "", "asc":
		var page persistence.Page
		page, err = s.store.Range(ctx, topic, cursor, limit)
		msgs = page.Messages
	case "desc": // the cursor is then the oldest id of the previous page
		msgs, err = s.store.RevRange(ctx, topic, cursor, limit)
	default:
		err = fmt.Errorf("%w: order must be asc or desc", messages.ErrInvalid)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := messages.HistoryResponse{Messages: msgs}
	if resp.Messages == nil {
		resp.Messages = []messages.Message{}
	}
	if len(msgs) == limit {
		next := msgs[len(msgs)-1].ID.String()
		resp.NextCursor = &next
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"status": "healthy", "timestamp": messages.FormatTime(time.Now()), "version": s.cfg.Version,
		"auth": map[bool]string{true: "on", false: "off"}[s.authOn()],
	})
}

// handleReady reports whether the relay can take publishes: the store
// answers and the relay is not shutting down.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{"storage": "ok"}
	ready := true
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		checks["storage"] = err.Error()
		ready = false
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
