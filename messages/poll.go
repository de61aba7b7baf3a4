package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// PollBody is the body of POST /api/v1/poll as sent: the topics to wait on,
// where each one's cursor is, and how long to wait (seconds). The gateway
// validates it.
type PollBody struct {
	Topics  []string          `json:"topics"`
	Since   map[string]string `json:"since"`
	Timeout *float64          `json:"timeout"`
}

// DecodePollBody decodes a poll body as encoding/json's Decoder decodes its
// first value into a PollBody (what follows that value is not read). Errors
// wrap ErrInvalid.
//
// The common shape is decoded without encoding/json (decodePollFast): its
// reflection grew the stack of nearly every poll request's goroutine (the
// collector shrinks a waiter's stack while it waits), and the two were a
// fifth of the relay's CPU in a fan-out to 1,000 long-poll subscribers.
func DecodePollBody(b []byte) (PollBody, error) {
	if p, ok := decodePollFast(b); ok {
		return p, nil
	}
	var p PollBody
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&p); err != nil {
		return PollBody{}, fmt.Errorf("%w: body is not a valid poll request: %s", ErrInvalid, describeJSONError(err))
	}
	return p, nil
}

// decodePollFast decodes a poll body of the common shape: one object
// holding "topics" (an array of strings), "since" (an object of strings)
// and "timeout" (a non-negative integer), each at most once, keys spelled
// exactly so, the body all ASCII, its strings without escapes or control
// characters (topics and ids are), and nothing after the object but
// whitespace. Anything else (null, other keys or spellings, which
// encoding/json would match, escapes, fractions, duplicates) returns ok
// false, and DecodePollBody decodes the body with encoding/json, so what
// is accepted and its meaning do not change (FuzzDecodePollBody compares
// the two).
func decodePollFast(b []byte) (p PollBody, ok bool) {
	if !isASCII(b) {
		return p, false
	}
	const hasTopics, hasSince, hasTimeout = 1, 2, 4
	seen := 0
	end, ok := objectMembers(b, skipSpace(b, 0), func(key []byte, i int) (int, bool) {
		var bit int
		ok := true
		switch string(key) {
		case "topics":
			bit = hasTopics
			p.Topics, i, ok = plainStringArray(b, i)
		case "since":
			bit = hasSince
			p.Since, i, ok = plainStringMap(b, i)
		case "timeout":
			bit = hasTimeout
			var n int64
			if n, i, ok = plainInt(b, i); ok && n >= 0 && n < 1e9 {
				t := float64(n)
				p.Timeout = &t
			} else {
				ok = false
			}
		default:
			return i, false
		}
		return i, once(&seen, bit, ok)
	})
	if !ok || skipSpace(b, end) != len(b) {
		return p, false
	}
	return p, true
}

// plainStringArray reads a JSON array of plain strings (plainString) at b[i].
func plainStringArray(b []byte, i int) (a []string, next int, ok bool) {
	if i >= len(b) || b[i] != '[' {
		return nil, i, false
	}
	a = []string{}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return a, i + 1, true
	}
	for {
		s, j, ok := plainString(b, skipSpace(b, i))
		if !ok {
			return nil, i, false
		}
		a = append(a, string(s))
		i = skipSpace(b, j)
		if i < len(b) && b[i] == ',' {
			i++
			continue
		}
		if i < len(b) && b[i] == ']' {
			return a, i + 1, true
		}
		return nil, i, false
	}
}

// isASCII reports whether b is all ASCII: a poll body with other bytes
// (which JSON allows only in strings) is left to encoding/json, which
// replaces invalid UTF-8 where the fast path would keep it.
func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
