package messages

import (
	"encoding/json"
	"io"
	"time"
)

// TimestampLayout is the wire form of every timestamp: RFC 3339, UTC,
// microseconds, "Z" suffix.
const TimestampLayout = "2006-01-02T15:04:05.000000Z"

// UnixNano is t in Unix nanoseconds, 0 for the zero time: how the memory
// store and the hot ring keep a message's times (8 bytes without a
// pointer, against a time.Time's 24 with one). Exact for times between
// the years 1678 and 2262; 1970-01-01T00:00:00Z itself reads back as the
// zero time.
func UnixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// TimeOfUnixNano is UnixNano's inverse: the zero time for 0, else the time
// in UTC (as the Valkey store's times come back).
func TimeOfUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// MetadataBytes is what md's keys and values take together: what a holder
// of a message counts for its metadata.
func MetadataBytes(md map[string]string) int {
	n := 0
	for k, v := range md {
		n += len(k) + len(v)
	}
	return n
}

// FormatTime renders t in TimestampLayout.
func FormatTime(t time.Time) string {
	var buf [len(TimestampLayout)]byte
	return string(AppendTime(buf[:0], t))
}

// AppendTime appends t in TimestampLayout, as t.UTC().AppendFormat would
// (fractions truncated to microseconds), without parsing the layout on
// every call: every publish answer and every frame carries a timestamp,
// and the generic formatter was about 2% of a publish's CPU.
func AppendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, TimestampLayout)
	}
	hour, min, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, min, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/1000, 6)
	return append(b, 'Z')
}

// appendDigits appends v, 0 <= v < 10^width, as width decimal digits.
func appendDigits(b []byte, v, width int) []byte {
	var d [6]byte
	for i := width - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, d[:width]...)
}

// Message is a stored message: what history, poll and replay return, and what
// a "message" frame carries. A Message is immutable once stored; it is shared
// between goroutines without copying.
type Message struct {
	ID        ID
	Topic     string
	Payload   json.RawMessage // a compact JSON object
	Timestamp time.Time       // when the relay accepted it, UTC
	Metadata  map[string]string
	ExpiresAt time.Time // zero: never expires (no ttl)

	// Idempotency (never on the wire). When IdempotencyKey is set, a Store
	// appends the message at most once per (topic, key) within
	// IdempotencyWindow: a repeat is not stored again; Append sets its ID and
	// Timestamp to the first one's and Duplicate to true, or, when its
	// RequestHash differs from the first one's, sets Conflict instead (the
	// caller answers ErrIdempotencyKeyReused). A duplicate or conflicting
	// message counts as handled in Append's n; it is never delivered.
	IdempotencyKey string
	RequestHash    string
	Duplicate      bool
	Conflict       bool
	// Publisher names who sent a keyed message (the gateway's rate-limit
	// identity; never stored, never on the wire): the memory store shares
	// its bounded idempotency records among publishers, so that one sending
	// fresh keys fast cannot push out another's before their window ends.
	Publisher string
}

// IdempotencyWindow is how long a store remembers an Idempotency-Key.
const IdempotencyWindow = 10 * time.Minute

// Expired reports whether m's ttl has passed at now.
func (m *Message) Expired(now time.Time) bool {
	return !m.ExpiresAt.IsZero() && !now.Before(m.ExpiresAt)
}

// AppendJSON appends m as a stored-message object:
// {"message_id","topic","payload","timestamp","metadata"}.
func (m *Message) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	return m.appendFields(b)
}

// frameHead is what a "message" frame has before m's fields.
const frameHead = `{"type":"message",`

// AppendFrame appends m as a WebSocket "message" frame.
func (m *Message) AppendFrame(b []byte) []byte {
	b = append(b, frameHead...)
	return m.appendFields(b)
}

// Frame returns m as a new WebSocket "message" frame, in one allocation of
// the size it needs. The topic actor calls it once per message and shares
// the bytes with every subscriber.
func (m *Message) Frame() []byte {
	return m.AppendFrame(make([]byte, 0, m.FrameLen()))
}

// FrameLen is the length of m's frame (Frame), unless escaping lengthens
// its metadata.
func (m *Message) FrameLen() int { return len(frameHead) + m.fieldsLen() }

// fieldsLen is how many bytes appendFields writes for m, unless escaping
// lengthens its metadata (append then grows the buffer): a capacity that
// spares the encoders a regrowth and its copy.
func (m *Message) fieldsLen() int {
	const fixed = len(`"message_id":"`) + 2*20 + 1 + len(`","topic":"`) + len(`","payload":`) +
		len(`,"timestamp":"`) + len(TimestampLayout) + len(`","metadata":`) + len("{}") + len("}")
	return fixed + len(m.Topic) + max(len(m.Payload), len("{}")) +
		MetadataBytes(m.Metadata) + len(m.Metadata)*len(`"":"",`)
}

func (m *Message) appendFields(b []byte) []byte {
	b = m.appendHead(b)
	if len(m.Payload) == 0 {
		b = append(b, "{}"...)
	} else {
		b = append(b, m.Payload...)
	}
	return m.appendTail(b)
}

// WriteJSON writes m as AppendJSON would, with the payload passed to w as
// it is stored (no copy of it is made), and returns scratch, grown if
// needed, for the next call. Only the small fields go through scratch.
func (m *Message) WriteJSON(w io.Writer, scratch []byte) ([]byte, error) {
	scratch = m.appendHead(append(scratch[:0], '{'))
	payload := m.Payload
	if len(payload) == 0 {
		payload = []byte("{}")
	}
	if _, err := w.Write(scratch); err != nil {
		return scratch, err
	}
	if _, err := w.Write(payload); err != nil {
		return scratch, err
	}
	scratch = m.appendTail(scratch[:0])
	_, err := w.Write(scratch)
	return scratch, err
}

// appendHead appends the fields before the payload's value.
func (m *Message) appendHead(b []byte) []byte {
	b = append(b, `"message_id":"`...)
	b = m.ID.AppendTo(b)
	// Topic names are validated to [A-Za-z0-9._-], which JSON never escapes.
	b = append(b, `","topic":"`...)
	b = append(b, m.Topic...)
	return append(b, `","payload":`...)
}

// appendTail appends the fields after the payload, and the closing brace.
func (m *Message) appendTail(b []byte) []byte {
	b = append(b, `,"timestamp":"`...)
	b = AppendTime(b, m.Timestamp)
	b = append(b, `","metadata":`...)
	b = appendMetadata(b, m.Metadata)
	return append(b, '}')
}

func appendMetadata(b []byte, md map[string]string) []byte {
	if len(md) == 0 {
		return append(b, "{}"...)
	}
	enc, err := json.Marshal(md) // sorted keys, escaped; never fails for map[string]string
	if err != nil {
		return append(b, "{}"...)
	}
	return append(b, enc...)
}

// MarshalJSON makes Message encode in its wire form wherever encoding/json
// meets it (history and poll responses).
func (m Message) MarshalJSON() ([]byte, error) {
	return m.AppendJSON(make([]byte, 0, 1+m.fieldsLen())), nil
}

// AppendPublishResponse appends the 201 body of a publish,
// {"message_id","topic","timestamp"}, built by hand for the hot path: an id,
// a validated topic and a timestamp never need escaping.
func (m *Message) AppendPublishResponse(b []byte) []byte {
	b = append(b, `{"message_id":"`...)
	b = m.ID.AppendTo(b)
	b = append(b, `","topic":"`...)
	b = append(b, m.Topic...)
	b = append(b, `","timestamp":"`...)
	b = AppendTime(b, m.Timestamp)
	return append(b, "\"}\n"...)
}

// PublishResponse returns the 201 body of a publish (AppendPublishResponse)
// in one allocation of the size it needs.
func (m *Message) PublishResponse() []byte {
	const fixed = len(`{"message_id":"`) + 2*20 + 1 + len(`","topic":"`) + len(`","timestamp":"`) +
		len(TimestampLayout) + len("\"}\n")
	return m.AppendPublishResponse(make([]byte, 0, fixed+len(m.Topic)))
}

// HistoryResponse is the body of GET /api/v1/topics/{topic}/messages.
// NextCursor is the id to pass as "after" for the next page, empty at the end.
type HistoryResponse struct {
	Messages   []Message `json:"messages"`
	NextCursor *string   `json:"next_cursor"`
}

// ErrorBody is the body of every non-2xx response.
type ErrorBody struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}
