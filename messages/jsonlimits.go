package messages

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Limits on the JSON a publish may carry, beyond its size. A payload within
// them is safe for common subscribers: Python's json raises RecursionError
// near 1,000 levels and refuses integers of more than 4,300 digits, browsers
// fail a WebSocket whose text frame is not UTF-8 (close 1007).
const (
	// MaxJSONDepth is the deepest nesting of objects and arrays in a
	// payload: the payload object itself is level 1.
	MaxJSONDepth = 64
	// MaxNumberLen is the longest number literal, in characters, anywhere in
	// a publish body.
	MaxNumberLen = 100
	// MaxEchoLen bounds how many bytes of client input an error message
	// quotes (see QuotePrefix).
	MaxEchoLen = 64
)

// CheckJSON scans a JSON document once and refuses, wrapping ErrInvalid, what
// encoding/json would accept but a reader could not: bytes that are not
// UTF-8 (encoding/json would silently replace them in a string and keep
// them as they are in a json.RawMessage), objects and arrays nested deeper
// than maxDepth levels (the outermost value is level 1), and number literals
// longer than MaxNumberLen characters. It does not check the syntax: a
// document it accepts must still be parsed.
//
// It costs one pass over b and no allocation unless it fails.
func CheckJSON(b []byte, maxDepth int) error {
	depth := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '"':
			// A string: skip to its closing quote, checking UTF-8.
			for i++; i < len(b); i++ {
				c = b[i]
				if !strSpecial[c] {
					continue
				}
				if c < utf8.RuneSelf {
					if c == '"' {
						break
					}
					i++ // a backslash: the escaped byte is ASCII in valid JSON
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
		case c >= utf8.RuneSelf:
			// Outside a string this is a syntax error; say what it is if it
			// is not even UTF-8.
			if r, size := utf8.DecodeRune(b[i:]); r == utf8.RuneError && size == 1 {
				return fmt.Errorf("%w: invalid UTF-8 at byte offset %d", ErrInvalid, i)
			}
		}
	}
	return nil
}

// strSpecial marks the bytes a string scan stops at: the quote, the
// backslash, and every byte of a multi-byte UTF-8 sequence.
var strSpecial = func() (t [256]bool) {
	t['"'], t['\\'] = true, true
	for c := utf8.RuneSelf; c < 256; c++ {
		t[c] = true
	}
	return t
}()

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// QuotePrefix quotes at most MaxEchoLen bytes of client input s (cut at a
// character boundary, "..." marking the cut), escaped as a Go string literal,
// for error messages: a client never gets back more than about 4 times
// MaxEchoLen bytes of what it sent, and never bytes that are not UTF-8.
func QuotePrefix(s string) string {
	if len(s) <= MaxEchoLen {
		return strconv.Quote(s)
	}
	cut := MaxEchoLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}
