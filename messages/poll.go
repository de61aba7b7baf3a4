package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
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
		return PollBody{}, fmt.Errorf("%w: body is not a valid poll request: %v", ErrInvalid, err)
	}
	return p, nil
}

// decodePollFast decodes a poll body of the common shape: one object holding
// "topics" (an array of strings), "since" (an object of strings) and
// "timeout" (a non-negative integer), each at most once, keys spelled
// exactly so, every string printable ASCII without escapes (topics and ids
// are), and nothing after the object but whitespace. Anything else (null,
// other keys or spellings, which encoding/json would match, escapes,
// fractions, duplicates) returns ok false, and DecodePollBody decodes the
// body with encoding/json, so what is accepted and its meaning do not change
// (FuzzDecodePollBody compares the two).
func decodePollFast(b []byte) (p PollBody, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return p, false
	}
	const hasTopics, hasSince, hasTimeout = 1, 2, 4
	seen := 0
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return p, skipSpace(b, i+1) == len(b)
	}
	for {
		key, next, ok := plainString(b, skipSpace(b, i))
		if !ok {
			return p, false
		}
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return p, false
		}
		i = skipSpace(b, i+1)
		var bit int
		switch string(key) {
		case "topics":
			bit = hasTopics
			if p.Topics, i, ok = plainStringArray(b, i); !ok {
				return p, false
			}
		case "since":
			bit = hasSince
			if p.Since, i, ok = plainStringMap(b, i); !ok {
				return p, false
			}
		case "timeout":
			bit = hasTimeout
			j := i
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			digits := b[i:j]
			if len(digits) == 0 || len(digits) > 9 || (len(digits) > 1 && digits[0] == '0') ||
				(j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E')) {
				return p, false // not JSON, or not an integer: encoding/json decides
			}
			n, err := strconv.Atoi(string(digits))
			if err != nil {
				return p, false
			}
			t := float64(n)
			p.Timeout, i = &t, j
		default:
			return p, false
		}
		if seen&bit != 0 {
			return p, false
		}
		seen |= bit
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i++
			continue
		}
		if i < len(b) && b[i] == '}' {
			break
		}
		return p, false
	}
	if skipSpace(b, i+1) != len(b) || !p.ascii() {
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

// ascii reports whether every string in p is ASCII: encoding/json would
// replace the bytes of invalid UTF-8 where the fast path keeps them.
func (p *PollBody) ascii() bool {
	for _, t := range p.Topics {
		if !isASCII(t) {
			return false
		}
	}
	for k, v := range p.Since {
		if !isASCII(k) || !isASCII(v) {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
