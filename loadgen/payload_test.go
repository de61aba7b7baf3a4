package loadgen

import (
	"encoding/json"
	"testing"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, p := range []payload{{}, {Seq: 7, SentNs: 123456789012, Pub: 3}, {Seq: 1<<40 + 1, SentNs: 1 << 61, Pub: 1023}} {
		for _, pad := range []int{0, 10} {
			b := appendPayload(nil, p, pad)
			if !json.Valid(b) {
				t.Fatalf("appendPayload produced invalid JSON %s", b)
			}
			got, ok := scanPayload(b)
			if !ok || got != p {
				t.Errorf("scanPayload(%s) = %+v, %v; want %+v", b, got, ok, p)
			}
			slow, err := decodePayload(b)
			if err != nil || slow != p {
				t.Errorf("decodePayload(%s) = %+v, %v; want %+v", b, slow, err, p)
			}
		}
	}
}

func TestScanPayload(t *testing.T) {
	tests := []struct {
		in   string
		want payload
		ok   bool
	}{
		{`{"seq":1,"sent_ns":2,"pub":3}`, payload{1, 2, 3}, true},
		{`{"pub": 3, "seq": 1, "sent_ns": 2}`, payload{1, 2, 3}, true},
		{`{"type":"message","topic":"a-0","payload":{"seq":5,"sent_ns":99,"pub":0},"metadata":{}}`, payload{5, 99, 0}, true},
		{`{"seq":1.5,"sent_ns":2,"pub":3}`, payload{}, false}, // not a plain integer
		{`{"seq":1,"sent_ns":2e9,"pub":3}`, payload{}, false}, // exponent: slow path
		{`{"seq":1,"sent_ns":2}`, payload{}, false},           // missing pub
		{`{"seq":-1,"sent_ns":2,"pub":3}`, payload{}, false},  // negative
		{`{"seq":1,"sent_ns":2,"pub":`, payload{}, false},     // truncated
		{`{"seq":99999999999999999999,"sent_ns":2,"pub":3}`, payload{}, false},
	}
	for _, tc := range tests {
		got, ok := scanPayload([]byte(tc.in))
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("scanPayload(%s) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestDecodePayloadFloats(t *testing.T) {
	got, err := decodePayload([]byte(`{"seq":1.0,"sent_ns":2e9,"pub":3}`))
	if err != nil || got != (payload{1, 2e9, 3}) {
		t.Fatalf("decodePayload floats = %+v, %v", got, err)
	}
	for _, bad := range []string{`[]`, `{"seq":1}`, `{"seq":-1,"sent_ns":2,"pub":3}`} {
		if _, err := decodePayload([]byte(bad)); err == nil {
			t.Errorf("decodePayload(%s): want an error", bad)
		}
	}
}

func TestTopicNames(t *testing.T) {
	if n := topicName("bench-1", 42); n != "bench-1-42" {
		t.Fatalf("topicName = %q", n)
	}
	tests := []struct {
		name string
		want int
		ok   bool
	}{
		{"bench-1-42", 42, true},
		{"bench-1-0", 0, true},
		{"bench-2-42", 0, false},
		{"bench-1-", 0, false},
		{"bench-1-4x", 0, false},
		{"bench-1", 0, false},
		{"bench-1-1234567890", 0, false},
	}
	for _, tc := range tests {
		got, ok := topicIndex("bench-1", []byte(tc.name))
		if ok != tc.ok || got != tc.want {
			t.Errorf("topicIndex(%q) = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	for _, p := range []string{"", "a b", "a:b", "ü"} {
		if validPrefix(p) == nil {
			t.Errorf("validPrefix(%q): want an error", p)
		}
	}
	if err := validPrefix("bench-1.x_y"); err != nil {
		t.Errorf("validPrefix: %v", err)
	}
}
