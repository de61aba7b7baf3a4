package messages

import "strconv"

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
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return req, false
	}
	const hasTopic, hasPayload, hasTTL, hasMetadata = 1, 2, 4, 8
	seen := 0
	i++
	for {
		i = skipSpace(b, i)
		key, next, ok := plainString(b, i)
		if !ok {
			return req, false
		}
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return req, false
		}
		i = skipSpace(b, i+1)
		var bit int
		switch string(key) {
		case "topic":
			bit = hasTopic
			var s []byte
			if s, i, ok = plainString(b, i); !ok {
				return req, false
			}
			req.Topic = string(s)
		case "payload":
			bit = hasPayload
			end := JSONObjectEnd(b, i)
			if end < 0 {
				return req, false
			}
			req.Payload, i = b[i:end:end], end
		case "ttl":
			bit = hasTTL
			j := i
			if j < len(b) && b[j] == '-' {
				j++
			}
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			digits := b[i:j]
			if len(digits) > 0 && digits[0] == '-' {
				digits = digits[1:]
			}
			if len(digits) > 1 && digits[0] == '0' { // not JSON: let encoding/json say so
				return req, false
			}
			ttl, err := strconv.ParseInt(string(b[i:j]), 10, 64)
			if err != nil || (j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E')) {
				return req, false
			}
			req.TTL, i = &ttl, j
		case "metadata":
			bit = hasMetadata
			if req.Metadata, i, ok = plainStringMap(b, i); !ok {
				return req, false
			}
		default:
			return req, false
		}
		if seen&bit != 0 {
			return req, false
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
		return req, false
	}
	if skipSpace(b, i+1) != len(b) || seen&(hasTopic|hasPayload) != hasTopic|hasPayload {
		return req, false
	}
	return req, true
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
	if i >= len(b) || b[i] != '{' {
		return nil, i, false
	}
	m = map[string]string{}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return m, i + 1, true
	}
	for {
		k, j, ok := plainString(b, skipSpace(b, i))
		if !ok {
			return nil, i, false
		}
		j = skipSpace(b, j)
		if j >= len(b) || b[j] != ':' {
			return nil, i, false
		}
		v, j, ok := plainString(b, skipSpace(b, j+1))
		if !ok {
			return nil, i, false
		}
		m[string(k)] = string(v)
		i = skipSpace(b, j)
		if i < len(b) && b[i] == ',' {
			i++
			continue
		}
		if i < len(b) && b[i] == '}' {
			return m, i + 1, true
		}
		return nil, i, false
	}
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
