package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"testing"
	"time"
	"unicode/utf8"
)

// sameAsEncodingJSON: whatever decodePublishFast accepts, encoding/json
// decodes to the same request (its payload compacted).
func sameAsEncodingJSON(t *testing.T, body []byte) {
	if CheckJSON(body, MaxJSONDepth+1) != nil {
		return
	}
	fast, ok := decodePublishFast(body)
	if !ok {
		return
	}
	var slow PublishRequest
	if err := json.Unmarshal(body, &slow); err != nil {
		if json.Valid(fast.Payload) {
			t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", body, err)
		}
		return // a bad payload: validate refuses it on the fast path too
	}
	var a, b bytes.Buffer
	errA, errB := json.Compact(&a, fast.Payload), json.Compact(&b, slow.Payload)
	if fast.Topic != slow.Topic || (fast.TTL == nil) != (slow.TTL == nil) || (fast.TTL != nil && *fast.TTL != *slow.TTL) ||
		!maps.Equal(fast.Metadata, slow.Metadata) || (fast.Metadata == nil) != (slow.Metadata == nil) || (errA == nil) != (errB == nil) || a.String() != b.String() {
		t.Fatalf("fast and encoding/json differ on %q:\n%+v\n%+v", body, fast, slow)
	}
}

func FuzzDecodePublish(f *testing.F) {
	for _, s := range []string{
		`{"topic":"t","payload":{"a":"}\"{"},"ttl":01}`, `{"topic":"t","Topic":"u","payload":{}}`,
		`{"topic":"t","payload":{"a":[}]}`, `{"topic":"t","payload":{},"metadata":{"a":"b","a":"c"}}`, `{"topic":"t","payload":{},"metadata":{}}`, `{ "payload" : { "x" : [ 1 , 2 ] } , "topic" : "t" , "ttl" : -0 } `,
		`{"topic":"notifications","payload":{"user_id":123}}`,
		`{"topic":"t","payload":{},"ttl":5,"metadata":{"a":"b"}}`,
		`{"topic":"t","payload":[1]}`, `{`, `null`, `{"topic":"","payload":{}}`,
		`{"topic":"t","payload":{"a":{"b":[[[1e99999]]]}},"ttl":9223372037}`,
		"{\"topic\":\"t\",\"payload\":{\"s\":\"\xff\"},\"metadata\":{\"k\":\"\xc3\"}}",
		`{"topic":"t","payload":` + nested(70) + `}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sameAsEncodingJSON(t, body)
		req, err := DecodePublish(body)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if ValidateTopic(req.Topic) != nil || len(req.Payload) == 0 || req.Payload[0] != '{' || !json.Valid(req.Payload) {
			t.Fatalf("accepted an invalid request: %+v", req)
		}
		if req.TTL != nil && (*req.TTL <= 0 || *req.TTL > int64(DefaultMaxTTL/time.Second)) {
			t.Fatalf("accepted ttl %d", *req.TTL)
		}
		// The limits hold for what is stored: UTF-8, nesting, numbers.
		if !utf8.Valid(body) {
			t.Fatalf("accepted a body that is not UTF-8: %q", body)
		}
		if err := CheckJSON(req.Payload, MaxJSONDepth); err != nil {
			t.Fatalf("accepted a payload over the limits: %v", err)
		}
		m := req.Message(timeZero)
		if req.TTL != nil && !m.ExpiresAt.After(m.Timestamp) {
			t.Fatalf("ttl %d stored already expired", *req.TTL)
		}
		frame := m.AppendFrame(nil)
		if !json.Valid(frame) || !utf8.Valid(frame) {
			t.Fatalf("frame of an accepted message is not UTF-8 JSON: %q", frame)
		}
	})
}

func FuzzDecodeClientFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"subscribe","topics":["a","b"],"offset":"earliest"}`,
		`{"type":"subscribe","topics":["a"],"since":{"a":"1-2"}}`,
		`{"type":"unsubscribe","topics":["a"]}`, `{"type":"ping"}`, `{"type":"ack","message_id":"1-1"}`,
		`hello`, `{"type":7}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := DecodeClientFrame(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnknownType) && !errors.Is(err, ErrSubscription) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if fr.Type == TypeSubscribe || fr.Type == TypeUnsubscribe {
			if len(fr.Topics) == 0 {
				t.Fatal("accepted a subscription without topics")
			}
			for _, topic := range fr.Topics {
				if ValidateTopic(topic) != nil {
					t.Fatalf("accepted topic %q", topic)
				}
				_ = fr.Position(topic)
			}
		}
	})
}
