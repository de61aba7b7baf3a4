package messages

import (
	"bytes"
	"strconv"
)

// decodePublishFast decodes the common shape of a publish body without
// encoding/json: one object holding "topic" (a string without escapes),
// "payload" (an object) and optionally "ttl" (an integer) and "metadata"
// (an object of strings without escapes), each once, keys
// spelled exactly so, and nothing after the object but whitespace. The
// payload is a slice of body (not copied) and its syntax is not checked
// here: validate checks it, unless checkJSON found the whole body valid
// (then the slice is exactly the payload's value). Anything else (escapes,
// other keys, metadata, duplicates, other types, a key in another case,
// which encoding/json would match) returns ok false, and DecodePublishWith
// decodes the body with encoding/json as before, so what is accepted and
// its meaning do not change (FuzzDecodePublish compares the two). body has
// passed checkJSON.
//
// It exists because encoding/json's Unmarshal, with its RawMessage copy,
// was about a twentieth of a publish's CPU.
func decodePublishFast(b []byte) (req PublishRequest, ok bool) {
	const hasTopic, hasPayload, hasTTL, hasMetadata = 1, 2, 4, 8
	seen := 0
	end, ok := objectMembers(b, skipSpace(b, 0), func(key []byte, i int) (int, bool) {
		var bit int
		ok := true
		switch string(key) {
		case "topic":
			bit = hasTopic
			var s []byte
			if s, i, ok = plainString(b, i); ok {
				req.Topic = string(s)
			}
		case "payload":
			bit = hasPayload
			end := JSONObjectEnd(b, i)
			if end < 0 {
				return i, false
			}
			req.Payload, i = b[i:end:end], end
		case "ttl":
			bit = hasTTL
			var ttl int64
			if ttl, i, ok = plainInt(b, i); ok {
				req.TTL = &ttl
			}
		case "metadata":
			bit = hasMetadata
			req.Metadata, i, ok = plainStringMap(b, i)
		default:
			return i, false
		}
		return i, once(&seen, bit, ok)
	})
	if !ok || skipSpace(b, end) != len(b) || seen&(hasTopic|hasPayload) != hasTopic|hasPayload {
		return req, false
	}
	return req, true
}

// objectMembers reads the JSON object at b[i] whose keys are plain strings
// (plainString), calling value with each key and the index of its value;
// value returns the index after the value, or false to give up. It returns
// the index after the object.
func objectMembers(b []byte, i int, value func(key []byte, i int) (next int, ok bool)) (next int, ok bool) {
	if i >= len(b) || b[i] != '{' {
		return i, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		key, j, ok := plainString(b, skipSpace(b, i))
		if !ok {
			return i, false
		}
		j = skipSpace(b, j)
		if j >= len(b) || b[j] != ':' {
			return i, false
		}
		if j, ok = value(key, skipSpace(b, j+1)); !ok {
			return i, false
		}
		i = skipSpace(b, j)
		if i < len(b) && b[i] == ',' {
			i++
			continue
		}
		if i < len(b) && b[i] == '}' {
			return i + 1, true
		}
		return i, false
	}
}

// once marks bit in seen and reports true, or reports false when the
// member's value was not read (ok false) or bit was seen before (a
// repeated key, which encoding/json handles its own way).
func once(seen *int, bit int, ok bool) bool {
	if !ok || *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

// plainInt reads a JSON integer at b[i] that fits an int64: a JSON number
// (scanNumber) with no fraction or exponent.
func plainInt(b []byte, i int) (n int64, next int, ok bool) {
	if i >= len(b) {
		return 0, i, false
	}
	end, ok, exp := scanNumber(b, i)
	if !ok || exp || bytes.IndexByte(b[i:end], '.') >= 0 {
		return 0, i, false
	}
	n, err := strconv.ParseInt(string(b[i:end]), 10, 64)
	if err != nil {
		return 0, i, false
	}
	return n, end, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads a JSON string at b[i] with no escapes and no control
// characters: its bytes and the index after its closing quote.
func plainString(b []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20:
			return nil, i, false
		}
	}
	return nil, i, false
}

// plainStringMap reads a JSON object of plain strings (plainString) at
// b[i]; a repeated key keeps its last value, as encoding/json does.
func plainStringMap(b []byte, i int) (m map[string]string, next int, ok bool) {
	m = map[string]string{}
	next, ok = objectMembers(b, i, func(key []byte, i int) (int, bool) {
		v, j, ok := plainString(b, i)
		if ok {
			m[string(key)] = string(v)
		}
		return j, ok
	})
	if !ok {
		return nil, i, false
	}
	return m, next, true
}

// JSONObjectEnd returns the index after the JSON object starting at b[i],
// matching brackets outside strings, or -1. It does not check the syntax
// inside: a caller that needs valid JSON checks the slice (json.Valid).
func JSONObjectEnd(b []byte, i int) int {
	if i >= len(b) || b[i] != '{' {
		return -1
	}
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				if b[i] != '}' {
					return -1
				}
				return i + 1
			}
		}
	}
	return -1
}

// isCompact reports whether JSON text p has no whitespace outside its
// strings (json.Compact would return it unchanged, if it is valid).
func isCompact(p []byte) bool {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case ' ', '\t', '\n', '\r':
			return false
		case '"':
			for i++; i < len(p) && p[i] != '"'; i++ {
				if p[i] == '\\' {
					i++
				}
			}
		}
	}
	return true
}
