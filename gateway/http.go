package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

var (
	errNotFound = fmt.Errorf("%w: no such route", messages.ErrNotFound)
	errMethod   = fmt.Errorf("%w: method not allowed on this route", messages.ErrNotFound)
)

// handlePublish stores one message: 201 only after the store took it.
func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	if !isJSON(r.Header.Get("Content-Type")) {
		s.writeError(w, r, fmt.Errorf("%w: Content-Type must be application/json", messages.ErrUnsupportedMedia))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxMessageSize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			err = fmt.Errorf("%w: body over %d bytes", messages.ErrTooLarge, tooBig.Limit)
		} else {
			err = fmt.Errorf("%w: reading body: %v", messages.ErrInvalid, err)
		}
		s.writeError(w, r, err)
		return
	}
	req, err := messages.DecodePublish(body)
	if err != nil {
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
	writeJSON(w, http.StatusCreated, messages.NewPublishResponse(&stored))
}

// handleHistory pages through a topic's stored messages.
func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	topic := chi.URLParam(r, "topic")
	if err := messages.ValidateTopic(topic); err != nil {
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
	if v := q.Get("after"); v != "" {
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
