package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
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
		`{"topic":"t","payload":{"a":}}`, `{"topic":"t","payload":{"a":1,}}`, `{"topic":"t","payload":{ "a" : tru }}`, `{"topic":"t","payload":{}} x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sameAsEncodingJSON(t, body)
		req, err := DecodePublish(body)
		if ref, refErr := decodePublishReference(body); fmt.Sprint(err) != fmt.Sprint(refErr) || !reflect.DeepEqual(req, ref) {
			t.Fatalf("%q: DecodePublish = %+v, %v; with json.Valid on the payload %+v, %v", body, req, err, ref, refErr)
		}
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

// decodePublishReference is DecodePublish with validate told nothing of the
// body, so that it runs json.Valid on the payload.
func decodePublishReference(body []byte) (PublishRequest, error) {
	return decodePublish(body, PublishLimits{}, false)
}

// checkJSONLimitsReference is CheckJSON as it was before it checked the
// syntax too: checkJSON must return the same errors.
func checkJSONLimitsReference(b []byte, maxDepth int) error {
	depth := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '"':
			for i++; i < len(b); i++ {
				c = b[i]
				if c == '"' {
					break
				}
				if c == '\\' {
					skip, _ := surrogateReference(b, i)
					i += skip
					continue
				}
				if c < utf8.RuneSelf {
					continue
				}
				r, size := utf8.DecodeRune(b[i:])
				if r == utf8.RuneError && size == 1 {
					return fmt.Errorf("%w: invalid UTF-8 at byte offset %d", ErrInvalid, i)
				}
				i += size - 1
			}
		case c == '{' || c == '[':
			depth++
			if depth > maxDepth {
				return fmt.Errorf("%w: JSON nested deeper than %d levels", ErrInvalid, maxDepth)
			}
		case c == '}' || c == ']':
			depth--
		case c == '-' || c >= '0' && c <= '9':
			start := i
			for i+1 < len(b) && isNumberByte(b[i+1]) {
				i++
			}
			if n := i + 1 - start; n > MaxNumberLen {
				return fmt.Errorf("%w: a number literal of %d characters (the limit is %d)", ErrInvalid, n, MaxNumberLen)
			}
			if lit := b[start : i+1]; jsonNumber.Match(lit) {
				if f, err := strconv.ParseFloat(string(lit), 64); err != nil && math.IsInf(f, 0) {
					return fmt.Errorf("%w: the number %s is beyond what a 64-bit float holds (many JSON readers cannot read it)", ErrInvalid, lit)
				}
			}
		case c >= utf8.RuneSelf:
			if r, size := utf8.DecodeRune(b[i:]); r == utf8.RuneError && size == 1 {
				return fmt.Errorf("%w: invalid UTF-8 at byte offset %d", ErrInvalid, i)
			}
		}
	}
	return nil
}

// jsonNumber is a whole JSON number literal.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// surrogateReference: the escape at b[i] (a backslash in a string), when it
// is \u and four hex digits of a UTF-16 surrogate, must be a high one
// followed by an escaped low one (decoded with utf16, not with checkJSON's
// own code). It returns how far to skip (past a pair, else the escaped
// byte) and whether the escape is a lone surrogate.
func surrogateReference(b []byte, i int) (skip int, lone bool) {
	hex := func(at int) (rune, bool) {
		if at+6 > len(b) || b[at] != '\\' || b[at+1] != 'u' {
			return 0, false
		}
		v, err := strconv.ParseUint(string(b[at+2:at+6]), 16, 16)
		return rune(v), err == nil
	}
	r, ok := hex(i)
	if !ok || !utf16.IsSurrogate(r) {
		return 1, false
	}
	if lo, ok := hex(i + 6); ok && r < 0xDC00 && utf16.DecodeRune(r, lo) != utf8.RuneError {
		return 11, false
	}
	return 1, true
}

// firstLoneSurrogate is the offset of the first \u escape of a lone
// surrogate in a string of b, or -1.
func firstLoneSurrogate(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '"' {
			continue
		}
		for i++; i < len(b) && b[i] != '"'; i++ {
			if b[i] == '\\' {
				skip, lone := surrogateReference(b, i)
				if lone {
					return i
				}
				i += skip
			}
		}
	}
	return -1
}

// jsonSyntaxCases are documents on the edges of the JSON grammar, valid or
// not, some also over the limits after a syntax error.
var jsonSyntaxCases = []string{
	``, ` `, `1`, ` 1 `, `-0`, `-`, `01`, `-01`, `1.`, `.5`, `1.5`, `1e`, `1e+`, `1e-5`, `1E+05`, `1.5e3`, `0.0`, `-0.0e-0`,
	`1-`, `1.2.3`, `1e5e`, `+1`, `0x1`, `1 2`, `12`, `-a`, `Infinity`, `NaN`,
	`true`, `false`, `null`, `tru`, `nul`, `True`, `nulll`, `true1`, `truefalse`, `[true,false,null]`, `[tru]`, `{"a":nul}`,
	`""`, `"`, `"abc`, `"a\"`, `"a\\"`, `"\"`, `"\u12"`, `"\u12345"`, `"\u00e9\uD83D\uDE00"`, `"\uABCD"`, `"\uabcg"`, `"\x"`, `"\a"`, `"\'"`,
	`"\/\b\f\n\r\t\"\\"`, "\"\t\"", "\"\x00\"", "\"\x1f\"", "\"\x7f\"", "\"a\nb\"", `"\`, `"\u`, `"\u00"`,
	`{}`, `[]`, `{ }`, `[ ]`, `[[]]`, `[{}]`, `{"a":{}}`, `{"a":[]}`, `[[[[]]]]`, `{}{}`, `[][]`, `{}]`, `[}`, `{]`, `[`, `{`, `]`, `}`,
	`[1,]`, `[,1]`, `[,]`, `[1,,2]`, `[1 2]`, `{"a"}`, `{"a":}`, `{,}`, `{"a":1,}`, `{"a":1,,"b":2}`, `{"a" 1}`, `{"a"::1}`,
	`{1:2}`, `{a:1}`, `{"a":1 "b":2}`, `{"a":1}x`, `{"a":1},`, `:`, `,`, `[1]:`, `{"a":"b":"c"}`, `["a":1]`, `{"a",1}`,
	" \t\n\r{} \t\n\r", "\f{}", "{}\f", "\v1", "[1,\v2]", "{\"a\"\r:\n1\t}", "\xef\xbb\xbf{}", "{}\x00", "\u00a0{}",
	`{"a":[1,{"b":[true,{"c":null}]}],"d":"e"}`, `[{"a":[{"b":[{}]}]}]`, `[1,[2,[3,[4]]]]`, `{"a":[}]}`, `{"a":[1}`, `[{]}`,
	"\xff", "\"\xff\"", "x\xff", "[\"\xc3\xa9\"]", "é", "[é]", "\"a\x00\xff\"", "\"\\\xc3\xa9\"",
	`] {"n":` + strings.Repeat("1", MaxNumberLen+1) + `}`, `x` + nested(70), `{"a":"\u12"` + strings.Repeat("[", 70),
	`[` + strings.Repeat("1", MaxNumberLen) + `]`, `[-` + strings.Repeat("0", MaxNumberLen) + `]`, `]]]]` + strings.Repeat("[", 66),
	`[1e400]`, `[-1E309]`, `[1e-400]`, `[1.7976931348623157e308]`, `[1e400x]`, `x 1e400`, `["\ud800"]`, `["\ud800\udc00"]`,
	`["\udc00\ud800"]`, `["\uD800\u0041"]`, `["\ud800`, `["\ud800\u"]`, `{"\udfff":1}`, `x "\ud800"`,
}

// FuzzCheckJSONValid: checkJSON's errors are the limits-only scan's, and
// when there is none it agrees with json.Valid.
func FuzzCheckJSONValid(f *testing.F) {
	for _, s := range jsonSyntaxCases {
		f.Add([]byte(s), int16(MaxJSONDepth+1))
	}
	f.Add([]byte(nested(300)), int16(1000))
	f.Add([]byte(`[[[1]]]`), int16(2))
	f.Fuzz(func(t *testing.T, b []byte, maxDepth int16) {
		for _, depth := range []int{MaxJSONDepth + 1, int(maxDepth)} {
			valid, err := checkJSON(b, depth)
			if want := checkJSONLimitsReference(b, depth); fmt.Sprint(err) != fmt.Sprint(want) {
				t.Fatalf("checkJSON(%q, %d) err = %v, want %v", b, depth, err, want)
			}
			if err == nil && valid != json.Valid(b) {
				t.Fatalf("checkJSON(%q, %d) valid = %v, json.Valid says %v", b, depth, valid, !valid)
			}
			if err != nil && valid {
				t.Fatalf("checkJSON(%q, %d) = valid with error %v", b, depth, err)
			}
			if at := firstLoneSurrogate(b); err == nil && valid && at >= 0 {
				t.Fatalf("checkJSON(%q, %d) left a lone surrogate escape at %d", b, depth, at)
			}
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

// FuzzDecodePollBody: whatever decodePollFast accepts, encoding/json's
// Decoder (what DecodePollBody falls back to) decodes to the same body.
func FuzzDecodePollBody(f *testing.F) {
	for _, s := range []string{
		`{"topics":["a"],"since":{"a":"1-0"},"timeout":30}`,
		` { "topics" : [ "a" , "b.c" ] , "timeout" : 0 } `,
		`{"topics":[],"since":{}}`, `{}`, `{"topics":["a"]} x`, `{"Topics":["a"]}`,
		`{"topics":["a"],"topics":["b"]}`, `{"since":{"a":"1","a":"2"}}`, `{"timeout":1.5}`,
		`{"timeout":01}`, `{"timeout":1e3}`, `{"topics":["\u00e9"]}`, "{\"topics\":[\"\xff\"]}",
		`{"topics":null}`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := decodePollFast(body)
		if !ok {
			return
		}
		var want PollBody
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&want); err != nil {
			t.Fatalf("fast path took %q, encoding/json refuses it: %v", body, err)
		}
		if !slices.Equal(fast.Topics, want.Topics) || len(fast.Topics) != len(want.Topics) ||
			!maps.Equal(fast.Since, want.Since) ||
			(fast.Timeout == nil) != (want.Timeout == nil) || (fast.Timeout != nil && *fast.Timeout != *want.Timeout) {
			t.Fatalf("%q: fast path %+v, encoding/json %+v", body, fast, want)
		}
	})
}
