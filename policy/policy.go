package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// SlowConsumer is what a connection's full outgoing queue does:
// Disconnect closes it with 4008, DropOldest drops its oldest queued
// message and counts the drop.
type SlowConsumer string

// The slow-consumer policies (RELAY_SLOW_CONSUMER_POLICY).
const (
	Disconnect SlowConsumer = "disconnect"
	DropOldest SlowConsumer = "drop-oldest"
)

// Policy is the tuning of one topic. A nil field is unset: Set.Resolve fills
// it from a less specific rule or from the base. The file key of each field
// is in its comment, with the process-wide setting it overrides.
//
// A Policy is a value; Resolve and Merge never share a field's pointer with
// their inputs, so a caller may keep one without copying.
type Policy struct {
	Retention             *time.Duration // retention: how long the store keeps messages (RELAY_RETENTION)
	MaxMessages           *int           // max_messages: messages kept (RELAY_MAX_MESSAGES_PER_TOPIC)
	HotRetention          *time.Duration // hot_retention: recent messages kept in memory (RELAY_HOT_TIER_RETENTION)
	MailboxSize           *int           // mailbox_size: publishes queued before 503 (RELAY_TOPIC_MAILBOX_SIZE)
	MaxBatch              *int           // max_batch: messages per group-commit write (RELAY_MAX_BATCH)
	ConnectionQueueSize   *int           // connection_queue_size: messages queued per connection (RELAY_CONNECTION_QUEUE_SIZE)
	ConnectionQueueBytes  *int           // connection_queue_bytes: bytes queued per connection (RELAY_CONNECTION_QUEUE_BYTES)
	SlowConsumer          *SlowConsumer  // slow_consumer: disconnect or drop-oldest (RELAY_SLOW_CONSUMER_POLICY)
	SupervisorMaxRestarts *int           // supervisor_max_restarts: restarts allowed within the window (RELAY_SUPERVISOR_MAX_RESTARTS)
	SupervisorWindow      *time.Duration // supervisor_window: restart counting window (RELAY_SUPERVISOR_WINDOW)
	SupervisorBackoff     *time.Duration // supervisor_backoff: pause before each restart (RELAY_SUPERVISOR_BACKOFF)
	AnonymousRead         *bool          // anonymous_read: reads without a credential when auth is on
}

type kind int

const (
	kindDuration kind = iota
	kindInt
	kindBool
	kindSlowConsumer
)

// field describes one Policy field: its file key, its kind, the range an
// integer must fall in, and where it lives. The loader, Merge and the JSON
// codec all walk this one table.
type field struct {
	name     string
	env      string
	kind     kind
	min, max int
	durPtr   func(*Policy) **time.Duration
	intPtr   func(*Policy) **int
	boolPtr  func(*Policy) **bool
	slowPtr  func(*Policy) **SlowConsumer
}

// The ranges match the process-wide settings in cmd/relay/config.go.
var fields = []field{
	{name: "retention", env: "RELAY_RETENTION", kind: kindDuration, durPtr: func(p *Policy) **time.Duration { return &p.Retention }},
	{name: "max_messages", env: "RELAY_MAX_MESSAGES_PER_TOPIC", kind: kindInt, min: 1, max: 1 << 40, intPtr: func(p *Policy) **int { return &p.MaxMessages }},
	{name: "hot_retention", env: "RELAY_HOT_TIER_RETENTION", kind: kindDuration, durPtr: func(p *Policy) **time.Duration { return &p.HotRetention }},
	{name: "mailbox_size", env: "RELAY_TOPIC_MAILBOX_SIZE", kind: kindInt, min: 1, max: 1 << 30, intPtr: func(p *Policy) **int { return &p.MailboxSize }},
	{name: "max_batch", env: "RELAY_MAX_BATCH", kind: kindInt, min: 1, max: 1 << 16, intPtr: func(p *Policy) **int { return &p.MaxBatch }},
	{name: "connection_queue_size", env: "RELAY_CONNECTION_QUEUE_SIZE", kind: kindInt, min: 1, max: 1 << 30, intPtr: func(p *Policy) **int { return &p.ConnectionQueueSize }},
	{name: "connection_queue_bytes", env: "RELAY_CONNECTION_QUEUE_BYTES", kind: kindInt, min: 1024, max: 1 << 40, intPtr: func(p *Policy) **int { return &p.ConnectionQueueBytes }},
	{name: "slow_consumer", env: "RELAY_SLOW_CONSUMER_POLICY", kind: kindSlowConsumer, slowPtr: func(p *Policy) **SlowConsumer { return &p.SlowConsumer }},
	{name: "supervisor_max_restarts", env: "RELAY_SUPERVISOR_MAX_RESTARTS", kind: kindInt, min: 1, max: 1 << 20, intPtr: func(p *Policy) **int { return &p.SupervisorMaxRestarts }},
	{name: "supervisor_window", env: "RELAY_SUPERVISOR_WINDOW", kind: kindDuration, durPtr: func(p *Policy) **time.Duration { return &p.SupervisorWindow }},
	{name: "supervisor_backoff", env: "RELAY_SUPERVISOR_BACKOFF", kind: kindDuration, durPtr: func(p *Policy) **time.Duration { return &p.SupervisorBackoff }},
	{name: "anonymous_read", kind: kindBool, boolPtr: func(p *Policy) **bool { return &p.AnonymousRead }},
}

func fieldNamed(name string) (field, bool) {
	for _, f := range fields {
		if f.name == name {
			return f, true
		}
	}
	return field{}, false
}

// FieldNames lists the file keys of a policy in documentation order.
func FieldNames() []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.name
	}
	return out
}

func (f field) isSet(p *Policy) bool {
	switch f.kind {
	case kindDuration:
		return *f.durPtr(p) != nil
	case kindInt:
		return *f.intPtr(p) != nil
	case kindBool:
		return *f.boolPtr(p) != nil
	default:
		return *f.slowPtr(p) != nil
	}
}

// copyFrom sets dst's field to a fresh copy of src's (nil stays nil).
func (f field) copyFrom(dst, src *Policy) {
	switch f.kind {
	case kindDuration:
		*f.durPtr(dst) = clone(*f.durPtr(src))
	case kindInt:
		*f.intPtr(dst) = clone(*f.intPtr(src))
	case kindBool:
		*f.boolPtr(dst) = clone(*f.boolPtr(src))
	default:
		*f.slowPtr(dst) = clone(*f.slowPtr(src))
	}
}

func clone[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// Merge returns p with every field that over sets replaced by over's.
func (p Policy) Merge(over Policy) Policy {
	out := p.clone()
	for _, f := range fields {
		if f.isSet(&over) {
			f.copyFrom(&out, &over)
		}
	}
	return out
}

func (p Policy) clone() Policy {
	var out Policy
	for _, f := range fields {
		f.copyFrom(&out, &p)
	}
	return out
}

// IsZero reports whether no field is set.
func (p Policy) IsZero() bool {
	for _, f := range fields {
		if f.isSet(&p) {
			return false
		}
	}
	return true
}

// Equal reports whether p and q set the same fields to the same values.
func (p Policy) Equal(q Policy) bool {
	a, _ := p.MarshalJSON()
	b, _ := q.MarshalJSON()
	return bytes.Equal(a, b)
}

// MarshalJSON encodes the set fields under their file keys, in table order:
// durations as Go duration strings ("1h0m0s"), sizes as integers.
func (p Policy) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for _, f := range fields {
		if !f.isSet(&p) {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, f.name)
		b = append(b, ':')
		switch f.kind {
		case kindDuration:
			b = strconv.AppendQuote(b, (*f.durPtr(&p)).String())
		case kindInt:
			b = strconv.AppendInt(b, int64(**f.intPtr(&p)), 10)
		case kindBool:
			b = strconv.AppendBool(b, **f.boolPtr(&p))
		default:
			b = strconv.AppendQuote(b, string(**f.slowPtr(&p)))
		}
	}
	return append(b, '}'), nil
}

// UnmarshalJSON decodes the form MarshalJSON writes (a JSON object of file
// keys), with the same validation as a policy file. Errors wrap
// messages.ErrInvalid.
func (p *Policy) UnmarshalJSON(data []byte) error {
	rule, errs := parseJSONRule(data)
	if len(errs) > 0 {
		return joinErrors(errs)
	}
	*p = rule
	return nil
}

// String is the JSON form, for logs and test failures.
func (p Policy) String() string {
	b, _ := p.MarshalJSON()
	return string(b)
}

// scalarType is the type of a scalar as the document wrote it.
type scalarType int

const (
	scalarString scalarType = iota
	scalarNumber
	scalarBool
	scalarNull
)

// scalar is one field value of a document, with its line.
type scalar struct {
	text string
	typ  scalarType
	line int
}

// assign parses v for field f and sets it on p. A null unsets the field.
func (f field) assign(p *Policy, v scalar) error {
	if v.typ == scalarNull {
		f.copyFrom(p, &Policy{})
		return nil
	}
	switch f.kind {
	case kindDuration:
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		*f.durPtr(p) = &d
	case kindInt:
		if v.typ != scalarNumber {
			return fmt.Errorf("want an integer in %d..%d, not %s", f.min, f.max, describe(v))
		}
		n, err := strconv.ParseInt(v.text, 10, 64)
		if err != nil || n < int64(f.min) || n > int64(f.max) {
			return fmt.Errorf("want an integer in %d..%d, not %s", f.min, f.max, v.text)
		}
		i := int(n)
		*f.intPtr(p) = &i
	case kindBool:
		if v.typ != scalarBool {
			return fmt.Errorf("want true or false, not %s", describe(v))
		}
		b := v.text == "true"
		*f.boolPtr(p) = &b
	default:
		s := SlowConsumer(v.text)
		if v.typ != scalarString || (s != Disconnect && s != DropOldest) {
			return fmt.Errorf("want %q or %q, not %s", Disconnect, DropOldest, describe(v))
		}
		*f.slowPtr(p) = &s
	}
	return nil
}

// parseDuration accepts Go syntax ("600s", "10m") or a whole number of
// seconds, as the RELAY_* duration settings do; it must be positive.
func parseDuration(v scalar) (time.Duration, error) {
	const want = `want a positive duration like "600s" or "10m", or a number of seconds`
	if v.typ != scalarString && v.typ != scalarNumber {
		return 0, fmt.Errorf("%s, not %s", want, describe(v))
	}
	if n, err := strconv.ParseInt(v.text, 10, 64); err == nil {
		if n <= 0 || n > int64(time.Duration(1<<62)/time.Second) {
			return 0, fmt.Errorf("%s, not %s", want, v.text)
		}
		return time.Duration(n) * time.Second, nil
	}
	if v.typ == scalarNumber {
		return 0, fmt.Errorf("%s, not %s", want, v.text)
	}
	d, err := time.ParseDuration(v.text)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s, not %q", want, v.text)
	}
	return d, nil
}

func describe(v scalar) string {
	switch v.typ {
	case scalarString:
		return strconv.Quote(v.text)
	case scalarNull:
		return "null"
	}
	return v.text
}

// Value is a field's value as JSON text ("1h0m0s", 100, true), or "" when
// unset; name is a file key such as "mailbox_size".
func (p Policy) Value(name string) string {
	f, ok := fieldNamed(name)
	if !ok || !f.isSet(&p) {
		return ""
	}
	var one Policy
	f.copyFrom(&one, &p)
	b, _ := one.MarshalJSON()
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	return string(m[name])
}
