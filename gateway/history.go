package gateway

import (
	"bufio"
	"context"
	"fmt"
	"github.com/pulsar-relay/relay/auth"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

const (
	// historyChunk is the most messages one store read of a history page
	// asks for: a page of large messages stops after the first chunk, so
	// a limit of 1,000 never holds 1,000 large messages at once.
	historyChunk = 100
	// historyMaxReads bounds the store reads of one page (a store that
	// skips expired entries returns short pages with a Next).
	historyMaxReads = 16
	// historyWriteBuffer is the response buffer: the page is encoded into
	// it message by message, never as a whole.
	historyWriteBuffer = 32 << 10
)

// handleHistory pages through a topic's stored messages: at most limit
// messages and HistoryMaxBytes of encoded messages (at least one message),
// with next_cursor set whenever more may follow: the page is full, was cut
// by the byte cap, or the store stopped early (persistence.Page.Next).
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
	after := q.Get("after")
	if after == "" {
		after = q.Get("cursor")
	}
	if after != "" {
		id, err := messages.ParseID(after)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		cursor = id
	}
	desc := false
	switch q.Get("order") {
	case "", "asc":
	case "desc": // the cursor is then the oldest id of the previous page
		desc = true
	default:
		s.writeError(w, r, fmt.Errorf("%w: order must be asc or desc", messages.ErrInvalid))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
	defer cancel()
	msgs, next, err := s.readHistory(ctx, topic, cursor, limit, desc)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeHistory(w, msgs, next)
}

// readHistory reads one page in chunks of at most historyChunk messages,
// stopping at limit messages or HistoryMaxBytes of encoded messages. next is
// the cursor of the following page, or the zero ID at the end.
func (s *Server) readHistory(ctx context.Context, topic string, cursor messages.ID, limit int, desc bool) (msgs []messages.Message, next messages.ID, err error) {
	var size int64
	for reads := 0; ; reads++ {
		if reads == historyMaxReads {
			return msgs, cursor, nil // the store is skipping a long run: resume from here
		}
		want := min(limit-len(msgs), historyChunk)
		var page persistence.Page
		if desc {
			page, err = s.store.RevRange(ctx, topic, cursor, want)
		} else {
			page, err = s.store.Range(ctx, topic, cursor, want)
		}
		chunk, storeNext := page.Messages, page.Next
		if err != nil {
			return nil, messages.ID{}, err
		}
		for i := range chunk {
			n := encodedSize(&chunk[i])
			if len(msgs) > 0 && size+n > s.cfg.HistoryMaxBytes {
				s.lim.LimitHit("history_bytes")
				return msgs, msgs[len(msgs)-1].ID, nil
			}
			size += n
			msgs = append(msgs, chunk[i])
		}
		switch {
		case len(msgs) == limit:
			return msgs, msgs[len(msgs)-1].ID, nil
		case len(chunk) < want && storeNext.IsZero():
			return msgs, messages.ID{}, nil // the end
		case len(chunk) < want:
			cursor = storeNext // the store stopped early: go on from where it did
		default:
			cursor = chunk[len(chunk)-1].ID
		}
		if size >= s.cfg.HistoryMaxBytes {
			return msgs, cursor, nil
		}
	}
}

// encodedSize is about the size of m in a history page.
func encodedSize(m *messages.Message) int64 {
	n := 128 + len(m.Topic) + len(m.Payload) + messages.MetadataBytes(m.Metadata) + 6*len(m.Metadata)
	return int64(n)
}

// writeHistory streams {"messages":[...],"next_cursor":...} (writeMessages).
func (s *Server) writeHistory(w http.ResponseWriter, msgs []messages.Message, next messages.ID) {
	tail := `],"next_cursor":null}` + "\n"
	if !next.IsZero() {
		tail = `],"next_cursor":"` + next.String() + `"}` + "\n"
	}
	writeMessages(w, msgs, tail)
}

// writeMessages answers 200 with {"messages":[msgs] and then tail (which
// closes the list and the object), streamed through a small buffer one
// message at a time, under the request's write deadline: a history page
// and a long-poll answer are never held encoded as a whole.
func writeMessages(w http.ResponseWriter, msgs []messages.Message, tail string) {
	setJSONType(w.Header())
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, historyWriteBuffer)
	scratch := make([]byte, 0, 512)
	_, _ = bw.WriteString(`{"messages":[`)
	for i := range msgs {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		var err error
		// The payload goes to the socket as stored: no copy per message.
		if scratch, err = msgs[i].WriteJSON(bw, scratch); err != nil {
			return // the client went away or the write deadline passed
		}
	}
	_, _ = bw.WriteString(tail)
	_ = bw.Flush()
}
