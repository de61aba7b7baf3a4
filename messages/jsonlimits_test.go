package messages

import (
	"encoding/json"
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
		// Every reader must read what the relay accepts: a number past a
		// 64-bit float is refused by encoding/json (into any) and by
		// strict readers (lone surrogates: TestCheckJSONRewritesLoneSurrogates).
		{"the largest float", `{"n":1.7976931348623157e308,"m":-1e308}`, 1, true},
		{"a number past a 64-bit float", `{"n":1e400}`, 1, false},
		{"a negative one", `{"n":-2.5E+309}`, 1, false},
		{"an underflow reads as 0", `{"n":1e-400}`, 1, true},
		{"a surrogate pair escape", `{"s":"\ud83c\udf89"}`, 1, true},
		{"BMP escapes", `{"s":"\u00e9\uFFFF\u0000"}`, 1, true},
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

// TestCheckJSONRewritesLoneSurrogates: a \u escape of a lone UTF-16
// surrogate, which strict readers refuse, becomes \ufffd in place (what
// encoding/json reads it as); pairs and other escapes stay as they are.
func TestCheckJSONRewritesLoneSurrogates(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"s":"\ud800"}`, `{"s":"\ufffd"}`},
		{`{"s":"\uD800abcdef"}`, `{"s":"\ufffdabcdef"}`},
		{`{"s":"x\udc00"}`, `{"s":"x\ufffd"}`},
		{`{"s":"\ud800\ud800\udc00"}`, `{"s":"\ufffd\ud800\udc00"}`},
		{`{"\udfff":1}`, `{"\ufffd":1}`},
		{`{"s":"\ud83c\udf89 \u00e9 \\ud800"}`, `{"s":"\ud83c\udf89 \u00e9 \\ud800"}`},
	} {
		b := []byte(c.in)
		if err := CheckJSON(b, 4); err != nil || string(b) != c.want {
			t.Errorf("%s: CheckJSON = %v, the document now %s; want %s", c.in, err, b, c.want)
		}
	}
}

func TestCheckJSONValid(t *testing.T) {
	deepArray := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tc := range []struct {
		doc      string
		maxDepth int
		valid    bool
	}{
		{`{"a":[1,-2.5e+3,{"b":"c\"\\\/\b\f\n\r\t\u00E9"}],"d":true,"e":false,"f":null}`, 3, true},
		{` 0 `, 1, true}, {`-0.0E-0`, 1, true}, {`""`, 1, true}, {`[]`, 1, true}, {"\t{ \"a\" :\r\n[ ] }\n", 2, true},
		{``, 1, false}, {` `, 1, false}, {`-`, 1, false}, {`01`, 1, false}, {`1.`, 1, false}, {`.5`, 1, false},
		{`1e`, 1, false}, {`1e+`, 1, false}, {`+1`, 1, false}, {`1 2`, 1, false}, {`{}{}`, 1, false},
		{`"\u12"`, 1, false}, {`"\x"`, 1, false}, {"\"\x01\"", 1, false}, {`"abc`, 1, false}, {`"\"`, 1, false},
		{`[1,]`, 1, false}, {`{"a"}`, 1, false}, {`{"a":}`, 1, false}, {`{,}`, 1, false}, {`{"a":1,}`, 1, false},
		{`[}`, 1, false}, {`{"a":[1}]`, 2, false}, {`tru`, 1, false}, {`nulll`, 1, false}, {"\f1", 1, false}, {"1\v", 1, false},
		// Deeper than checkJSON's stack: json.Valid decides, with its own
		// limit of 10,000 levels.
		{nested(300), 20000, true}, {deepArray(300), 20000, true}, {deepArray(10000), 20000, true},
		{deepArray(10001), 20000, false}, {nested(300)[1:], 20000, false}, {deepArray(300) + "]", 20000, false},
		{strings.Repeat("[", 300) + "}" + strings.Repeat("]", 299), 20000, false},
	} {
		valid, err := checkJSON([]byte(tc.doc), tc.maxDepth)
		if err != nil || valid != tc.valid || json.Valid([]byte(tc.doc)) != tc.valid {
			t.Errorf("checkJSON(%.40q, %d) = %v, %v; want %v (json.Valid %v)", tc.doc, tc.maxDepth, valid, err, tc.valid, json.Valid([]byte(tc.doc)))
		}
	}
	for _, doc := range jsonSyntaxCases { // the fuzz seeds, with their limits errors
		valid, err := checkJSON([]byte(doc), MaxJSONDepth+1)
		if want := checkJSONLimitsReference([]byte(doc), MaxJSONDepth+1); fmt.Sprint(err) != fmt.Sprint(want) || err == nil && valid != json.Valid([]byte(doc)) {
			t.Errorf("checkJSON(%.40q) = %v, %v; want error %v, json.Valid %v", doc, valid, err, want, json.Valid([]byte(doc)))
		}
	}
}

// A payload that is not JSON is refused whether or not the body around it
// was checked: validate checks it when not told the body is valid.
func TestValidateChecksPayload(t *testing.T) {
	for _, p := range []string{`{"a":}`, `{"a":1}}`, `{"a":"\x"}`, "{\"a\":\"\x01\"}"} {
		r := PublishRequest{Topic: "t", Payload: []byte(p)}
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "payload is not valid JSON") {
			t.Errorf("Validate of payload %q = %v", p, err)
		}
		body := []byte(`{"topic":"t","payload":` + p + `}`)
		if _, err := DecodePublish(body); err == nil {
			t.Errorf("DecodePublish(%q) accepted it", body)
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
		{"null metadata value", body(`{}`, `,"metadata":{"k":null}`), PublishLimits{}, false},
		{"null metadata value after an empty one", body(`{}`, `,"metadata":{"a":"","k":null}`), PublishLimits{}, false},
		{"empty metadata value", body(`{}`, `,"metadata":{"k":""}`), PublishLimits{}, true},
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

// TestErrorTextsSayWhatIsWrong: a refusal names the real problem in the
// client's terms, not Go's.
func TestErrorTextsSayWhatIsWrong(t *testing.T) {
	lim := PublishLimits{}
	for _, c := range []struct{ body, want string }{
		{`{"topic":"t","payload":{},"ttl":1.0}`, `field "ttl" must be an integer, not the JSON number 1.0`},
		{`{"topic":"t","payload":{},"metadata":{"k":1}}`, `must be a string, not the JSON number`},
		{`{"topic":"` + strings.Repeat("é", 300) + `","payload":{}}`, `has a character outside [A-Za-z0-9._-]`},
		{`{"topic":"t","payload":` + nested(65) + `}`, `nested deeper than 64 levels`},
	} {
		_, err := DecodePublishWith([]byte(c.body), lim)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.60s: %v, want it to say %q", c.body, err, c.want)
		}
	}
	_, err := DecodePollBody([]byte(`{"topics":["a"],"timeout":"5"}`))
	if err == nil || strings.Contains(err.Error(), "Go struct") || !strings.Contains(err.Error(), `"timeout" must be a number`) {
		t.Errorf("poll with a string timeout: %v", err)
	}
}
