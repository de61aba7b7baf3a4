package messages

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func nested(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }

func TestCheckJSON(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		depth     int
		ok        bool
	}{
		{"plain", `{"a":[1,2,{"b":"c"}],"d":-1.5e+10}`, 3, true},
		{"depth at the limit", nested(64), 64, true},
		{"depth over the limit", nested(65), 64, false},
		{"brackets inside strings do not count", `{"a":"[[[[[[{{{{"}`, 1, true},
		{"escaped quote", `{"a":"\"[[[[","b":[1]}`, 2, true},
		{"non-ASCII text", `{"a":"café 東京 🎉"}`, 1, true},
		{"invalid UTF-8 in a string", "{\"a\":\"\xff\"}", 1, false},
		{"truncated rune", "{\"a\":\"\xe6\x9d\"}", 1, false},
		{"surrogate half encoded in UTF-8", "{\"a\":\"\xed\xa0\x80\"}", 1, false},
		{"invalid UTF-8 in a key", "{\"\xc3\":1}", 1, false},
		{"number at the limit", `{"n":` + strings.Repeat("9", MaxNumberLen) + `}`, 1, true},
		{"number over the limit", `{"n":` + strings.Repeat("9", MaxNumberLen+1) + `}`, 1, false},
		{"long exponent", `{"n":1e` + strings.Repeat("0", MaxNumberLen) + `}`, 1, false},
		{"digits inside a string are text", `{"n":"` + strings.Repeat("9", 1000) + `"}`, 1, true},
	} {
		err := CheckJSON([]byte(tc.doc), tc.depth)
		if (err == nil) != tc.ok {
			t.Errorf("%s: CheckJSON = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v does not wrap ErrInvalid", tc.name, err)
		}
	}
}

func TestDecodePublishLimits(t *testing.T) {
	body := func(payload string, extra string) []byte {
		return []byte(`{"topic":"t","payload":` + payload + extra + `}`)
	}
	for _, tc := range []struct {
		name string
		body []byte
		lim  PublishLimits
		ok   bool
	}{
		{"payload depth 64", body(nested(64), ""), PublishLimits{}, true},
		{"payload depth 65", body(nested(65), ""), PublishLimits{}, false},
		{"9000 deep", body(nested(9000), ""), PublishLimits{}, false},
		{"100000-digit number", body(`{"n":`+strings.Repeat("1", 100000)+`}`, ""), PublishLimits{}, false},
		{"invalid UTF-8 in payload", body("{\"m\":\"caf\xe9\"}", ""), PublishLimits{}, false},
		{"invalid UTF-8 in metadata", body(`{}`, ",\"metadata\":{\"k\":\"\xff\xfe\"}"), PublishLimits{}, false},
		{"ttl at the retention", body(`{}`, `,"ttl":86400`), PublishLimits{MaxTTL: 24 * time.Hour}, true},
		{"ttl over the retention", body(`{}`, `,"ttl":86401`), PublishLimits{MaxTTL: 24 * time.Hour}, false},
		{"ttl that overflowed time.Duration", body(`{}`, `,"ttl":9223372037`), PublishLimits{}, false},
		{"ttl max int64", body(`{}`, `,"ttl":9223372036854775807`), PublishLimits{}, false},
		{"ttl of a year without retention", body(`{}`, `,"ttl":31536000`), PublishLimits{}, true},
	} {
		req, err := DecodePublishWith(tc.body, tc.lim)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, err, tc.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %v does not wrap ErrInvalid", tc.name, err)
			}
			if req.Topic != "t" {
				t.Errorf("%s: the refused request does not carry its topic (%q)", tc.name, req.Topic)
			}
			continue
		}
		m := req.Message(timeZero)
		if req.TTL != nil && !m.ExpiresAt.After(m.Timestamp) {
			t.Errorf("%s: ttl %d gives ExpiresAt %v, not after %v", tc.name, *req.TTL, m.ExpiresAt, m.Timestamp)
		}
	}
}

func TestQuotePrefix(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	got := QuotePrefix(long)
	if !strings.HasSuffix(got, "...") || len(got) > 4*MaxEchoLen+5 {
		t.Errorf("QuotePrefix of 200 bytes = %q", got)
	}
	if !utf8.ValidString(got) {
		t.Errorf("cut inside a character: %q", got)
	}
	if got := QuotePrefix("\xff\x00ab"); got != `"\xff\x00ab"` {
		t.Errorf("QuotePrefix escapes = %s", got)
	}
	_, err := DecodeClientFrame([]byte(`{"type":"` + strings.Repeat("x", 1<<20) + `"}`))
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("unknown type error echoes %d bytes", len(err.Error()))
	}
}

func TestClientText(t *testing.T) {
	dial := errors.New("dial tcp 10.0.0.5:6379: connect: connection refused")
	if got := ClientText(fmt.Errorf("valkey: range %q: %w: %w", "t", ErrUnavailable, dial)); got != ErrUnavailable.Error() {
		t.Errorf("store error shown as %q", got)
	}
	if got := ClientText(dial); strings.Contains(got, "10.0.0.5") {
		t.Errorf("unknown error shown as %q", got)
	}
	if got := ClientText(fmt.Errorf("%w: topic is required", ErrInvalid)); got != "invalid request: topic is required" {
		t.Errorf("client error shown as %q", got)
	}
}

func TestWriteJSONMatchesAppendJSON(t *testing.T) {
	for _, m := range []Message{
		{ID: ID{5, 1}, Topic: "a.b", Payload: []byte(`{"x":"\u00e9"}`), Timestamp: timeZero, Metadata: map[string]string{"k": "v\""}},
		{ID: ID{7, 0}, Topic: "t", Timestamp: timeZero},
	} {
		var b strings.Builder
		scratch, err := m.WriteJSON(&b, nil)
		if err != nil || b.String() != string(m.AppendJSON(nil)) || scratch == nil {
			t.Errorf("WriteJSON = %q, %v; AppendJSON = %q", b.String(), err, m.AppendJSON(nil))
		}
	}
}
