package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"time"
)

// MaxTopicLen is the longest topic name accepted.
const MaxTopicLen = 255

// ValidateTopic checks a topic name: 1..255 characters from [A-Za-z0-9._-].
// Nothing else ever reaches a storage key.
func ValidateTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("%w: topic is required", ErrInvalid)
	}
	for i := 0; i < len(topic) && i <= MaxTopicLen; i++ {
		c := topic[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: topic %s has a character outside [A-Za-z0-9._-]", ErrInvalid, QuotePrefix(topic))
		}
	}
	if len(topic) > MaxTopicLen {
		return fmt.Errorf("%w: topic is %d characters, the limit is %d", ErrInvalid, len(topic), MaxTopicLen)
	}
	return nil
}

// PublishRequest is the body of POST /api/v1/messages (and each element of a
// bulk publish).
type PublishRequest struct {
	Topic    string            `json:"topic"`
	Payload  json.RawMessage   `json:"payload"`
	TTL      *int64            `json:"ttl,omitempty"` // seconds; nil: no expiry
	Metadata map[string]string `json:"metadata,omitempty"`
}

// DefaultMaxTTL is the longest ttl a publish may ask for when the store
// keeps messages forever (RELAY_RETENTION 0); otherwise it is the retention.
const DefaultMaxTTL = 365 * 24 * time.Hour

// PublishLimits bound a publish beyond the wire contract's shape. The zero
// value means the defaults.
type PublishLimits struct {
	// MaxTTL is the longest ttl accepted (default DefaultMaxTTL); the relay
	// sets it to the retention, since a message cannot outlive its topic's
	// retention anyway.
	MaxTTL time.Duration
}

func (l PublishLimits) maxTTLSeconds() int64 {
	if l.MaxTTL <= 0 {
		return int64(DefaultMaxTTL / time.Second)
	}
	return max(1, int64(l.MaxTTL/time.Second))
}

// DecodePublish is DecodePublishWith under the default limits.
func DecodePublish(body []byte) (PublishRequest, error) {
	return DecodePublishWith(body, PublishLimits{})
}

// DecodePublishWith parses and validates a publish body. Every failure wraps
// ErrInvalid with a message fit for the client. The body must be UTF-8, its
// payload nested at most MaxJSONDepth levels, its numbers at most
// MaxNumberLen characters (CheckJSON), and its ttl within lim.
//
// On failure the returned request carries the topic when it could be read
// (a bulk publish echoes it), and nothing else.
func DecodePublishWith(body []byte, lim PublishLimits) (PublishRequest, error) {
	return decodePublish(body, lim, true)
}

// decodePublish is DecodePublishWith. With trustValid false, validate checks
// the payload with json.Valid even when the whole body was found valid
// (the reference FuzzDecodePublish holds the usual path to).
func decodePublish(body []byte, lim PublishLimits, trustValid bool) (PublishRequest, error) {
	// The body object is level 1, so its payload's own levels get
	// MaxJSONDepth. A valid body spares validate a json.Valid of the
	// payload; any other still goes through the decoders' own checks, so
	// that its error is what they say.
	valid, err := checkJSON(body, MaxJSONDepth+1)
	if err != nil {
		if _, deep := err.(*depthError); deep {
			err = fmt.Errorf("%w: the payload (or the metadata) is nested deeper than %d levels", ErrInvalid, MaxJSONDepth)
		}
		return PublishRequest{Topic: TopicOf(body)}, err
	}
	req, fast := decodePublishFast(body)
	if !fast {
		req = PublishRequest{}
		if err := json.Unmarshal(body, &req); err != nil {
			return PublishRequest{Topic: TopicOf(body)}, fmt.Errorf("%w: %s", ErrInvalid, describeJSONError(err))
		}
		if err := noNullMetadata(body, req.Metadata); err != nil {
			return PublishRequest{Topic: req.Topic}, err
		}
	}
	if err := req.validate(lim, valid && trustValid); err != nil {
		return PublishRequest{Topic: req.Topic}, err
	}
	return req, nil
}

// noNullMetadata refuses a metadata value of null, which encoding/json
// decodes into a map[string]string as "" (metadata is string to string;
// the fast decoder declines null values, so only this path meets them).
// Only a body whose metadata has an empty value is decoded again.
func noNullMetadata(body []byte, md map[string]string) error {
	empty := false
	for _, v := range md {
		empty = empty || v == ""
	}
	if !empty {
		return nil
	}
	var raw struct {
		Metadata map[string]*string `json:"metadata"`
	}
	if json.Unmarshal(body, &raw) != nil {
		return nil // decoded once already; cannot happen
	}
	for k, v := range raw.Metadata {
		if v == nil {
			return fmt.Errorf("%w: metadata %s must be a string, not null", ErrInvalid, QuotePrefix(k))
		}
	}
	return nil
}

// TopicOf reads the "topic" of a publish body that did not decode as a whole, for
// error reports: empty when it cannot be read.
func TopicOf(body []byte) string {
	var t struct {
		Topic string `json:"topic"`
	}
	if json.Unmarshal(body, &t) != nil || ValidateTopic(t.Topic) != nil {
		return ""
	}
	return t.Topic
}

// Validate checks the request against the wire contract under the default
// limits and compacts the payload in place. It does not run CheckJSON:
// DecodePublish does, on the raw body.
func (r *PublishRequest) Validate() error { return r.validate(PublishLimits{}, false) }

// validate is Validate under lim. bodyValid says the request was decoded
// from a body known to be valid JSON (checkJSON): its payload, a value cut
// out of that body, then is too, and a compact one is not checked again.
func (r *PublishRequest) validate(lim PublishLimits, bodyValid bool) error {
	if err := ValidateTopic(r.Topic); err != nil {
		return err
	}
	p := bytes.TrimSpace(r.Payload)
	if len(p) == 0 {
		return fmt.Errorf("%w: payload is required", ErrInvalid)
	}
	if p[0] != '{' {
		return fmt.Errorf("%w: payload must be a JSON object", ErrInvalid)
	}
	if isCompact(p) { // the usual case: keep it as it is, no copy
		if !bodyValid && !json.Valid(p) {
			return fmt.Errorf("%w: payload is not valid JSON", ErrInvalid)
		}
		r.Payload = p
	} else {
		var compact bytes.Buffer
		compact.Grow(len(p))
		if err := json.Compact(&compact, p); err != nil {
			return fmt.Errorf("%w: payload is not valid JSON", ErrInvalid)
		}
		r.Payload = compact.Bytes()
	}
	if r.TTL != nil {
		if *r.TTL <= 0 {
			return fmt.Errorf("%w: ttl must be a positive number of seconds", ErrInvalid)
		}
		if maxTTL := lim.maxTTLSeconds(); *r.TTL > maxTTL {
			return fmt.Errorf("%w: ttl must be at most %d seconds (the retention)", ErrInvalid, maxTTL)
		}
	}
	return nil
}

// Message turns a validated request into a message to store at now. The store
// assigns the ID.
func (r *PublishRequest) Message(now time.Time) Message {
	m := Message{Topic: r.Topic, Payload: r.Payload, Timestamp: now.UTC(), Metadata: r.Metadata}
	if r.TTL != nil {
		m.ExpiresAt = m.Timestamp.Add(time.Duration(*r.TTL) * time.Second)
	}
	return m
}

// jsonKind names what a JSON value decoding into t must be, for an error
// message ("an integer" for a ttl, not Go's "int64").
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another JSON type"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "another JSON type"
}

func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case asError(err, &typeErr):
		if typeErr.Field != "" {
			return fmt.Sprintf("field %s must be %s, not the JSON %s", QuotePrefix(typeErr.Field), jsonKind(typeErr.Type), typeErr.Value)
		}
		return fmt.Sprintf("body must be a JSON object, not a %s", typeErr.Value)
	case asError(err, &syntaxErr):
		return fmt.Sprintf("body is not valid JSON (offset %d)", syntaxErr.Offset)
	}
	return "body is not valid JSON"
}

// MaxBulk is the most messages one bulk publish may carry.
const MaxBulk = 100

// BulkRequest is the body of POST /api/v1/messages/bulk. Items are decoded
// raw so that one bad item is rejected alone.
type BulkRequest struct {
	Messages []json.RawMessage `json:"messages"`
}

// DecodeBulk parses a bulk body and checks its size (1..MaxBulk). Items are
// validated one by one with DecodePublish.
func DecodeBulk(body []byte) (BulkRequest, error) {
	var req BulkRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return BulkRequest{}, fmt.Errorf("%w: %s", ErrInvalid, describeJSONError(err))
	}
	if n := len(req.Messages); n == 0 || n > MaxBulk {
		return BulkRequest{}, fmt.Errorf("%w: \"messages\" must hold 1..%d messages, not %d", ErrInvalid, MaxBulk, n)
	}
	return req, nil
}

// BulkResult is one item of a bulk publish answer.
type BulkResult struct {
	MessageID string `json:"message_id,omitempty"`
	Topic     string `json:"topic"`
	Status    string `json:"status"` // "accepted" or "rejected"
	Error     string `json:"error,omitempty"`
}

// BulkResponse is the 207 body of a bulk publish.
type BulkResponse struct {
	Results []BulkResult `json:"results"`
	Summary BulkSummary  `json:"summary"`
}

// BulkSummary counts a bulk publish's results.
type BulkSummary struct {
	Total    int `json:"total"`
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
}
