package messages

import (
	"encoding/json"
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
// than maxDepth levels (the outermost value is level 1), and number
// literals longer than MaxNumberLen characters or beyond a 64-bit float
// (1e400). It rewrites a \u escape of a lone UTF-16 surrogate in b to
// \ufffd in place (the same length): strict readers refuse a lone
// surrogate, and encoding/json and most others read it as U+FFFD, which is
// what every reader then gets; clients that escape undecodable bytes that
// way (Python's surrogateescape) are not refused. It does not report syntax errors: a
// document it accepts must still be parsed.
//
// It costs one pass over b (two if b nests deeper than 256 levels: see
// checkJSON) and no allocation unless it fails.
func CheckJSON(b []byte, maxDepth int) error {
	_, err := checkJSON(b, maxDepth)
	return err
}

// Syntax states of checkJSON: what may come next.
const (
	synValue       = iota // a value
	synArrayFirst         // a value or ']'
	synObjectFirst        // a key or '}'
	synKey                // a key
	synColon              // ':'
	synNext               // ',' or a closing bracket; at the top level, the end
	synBad                // not JSON: only the limits are checked from here on
)

// checkJSON is CheckJSON, and in the same pass it checks the syntax: valid
// is json.Valid(b) when err is nil. err is the same as if the syntax were not
// checked: once b is known not to be JSON the scan goes on for the limits.
//
// While b is valid so far, the limits scan's depth is the real nesting, kept
// in a fixed bit stack; deeper than that (maxDepth over 256), json.Valid
// decides, which also applies encoding/json's own nesting limit.
func checkJSON(b []byte, maxDepth int) (valid bool, err error) {
	var objects bitStack // the containers open, by depth: object or array
	st, deep := synValue, false
	depth := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch byteClass[c] {
		case clSpace:
		case clQuote:
			switch st {
			case synValue, synArrayFirst:
				st = synNext
			case synKey, synObjectFirst:
				st = synColon
			default:
				st = synBad
			}
			// A string: skip to its closing quote, checking UTF-8.
			for i++; i < len(b); i++ {
				c = b[i]
				if !strSpecial[c] {
					continue
				}
				if c == '"' {
					break
				}
				if c == '\\' {
					if !validEscape(b, i) {
						st = synBad
					} else if b[i+1] == 'u' {
						n, ok := surrogates(b, i)
						if !ok {
							// A lone surrogate becomes U+FFFD, in place (the
							// same six bytes), as encoding/json reads it.
							copy(b[i+2:i+6], "fffd")
							n = 5
						}
						i += n // the escape but its last byte
						continue
					}
					i++ // skip the escaped byte, ASCII in valid JSON
					continue
				}
				if c < utf8.RuneSelf { // a control character
					st = synBad
					continue
				}
				r, size := utf8.DecodeRune(b[i:])
				if r == utf8.RuneError && size == 1 {
					return false, fmt.Errorf("%w: invalid UTF-8 at byte offset %d", ErrInvalid, i)
				}
				i += size - 1
			}
			if i >= len(b) { // unterminated
				st = synBad
			}
		case clOpen:
			depth++
			if depth > maxDepth {
				return false, &depthError{max: maxDepth}
			}
			switch {
			case st != synValue && st != synArrayFirst:
				st = synBad
			case depth > len(objects)*64:
				// Deeper than the stack holds: json.Valid decides.
				st, deep = synBad, true
			case c == '{':
				objects.set(depth, true)
				st = synObjectFirst
			default:
				objects.set(depth, false)
				st = synArrayFirst
			}
		case clClose:
			if st == synNext && depth > 0 && objects.get(depth) == (c == '}') ||
				st == synObjectFirst && c == '}' || st == synArrayFirst && c == ']' {
				st = synNext
			} else {
				st = synBad
			}
			depth--
		case clComma:
			switch {
			case st != synNext || depth == 0:
				st = synBad
			case objects.get(depth):
				st = synKey
			default:
				st = synValue
			}
		case clColon:
			if st == synColon {
				st = synValue
			} else {
				st = synBad
			}
		case clLiteral:
			// A literal holds no byte the limits look at: skip it whole.
			lit := "null"
			if c == 't' {
				lit = "true"
			} else if c == 'f' {
				lit = "false"
			}
			if (st == synValue || st == synArrayFirst) && len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
				i += len(lit) - 1
				st = synNext
			} else {
				st = synBad
			}
		case clNumber:
			end, ok, exp := scanNumber(b, i)
			if n := end - i; n > MaxNumberLen {
				return false, fmt.Errorf("%w: a number literal of %d characters (the limit is %d)", ErrInvalid, n, MaxNumberLen)
			}
			if ok && exp && outOfRange(b[i:end]) {
				return false, fmt.Errorf("%w: the number %s is beyond what a 64-bit float holds (many JSON readers cannot read it)", ErrInvalid, b[i:end])
			}
			if ok && (st == synValue || st == synArrayFirst) {
				st = synNext
			} else {
				st = synBad
			}
			i = end - 1
		case clHigh:
			// Outside a string this is a syntax error; say what it is if it
			// is not even UTF-8.
			if r, size := utf8.DecodeRune(b[i:]); r == utf8.RuneError && size == 1 {
				return false, fmt.Errorf("%w: invalid UTF-8 at byte offset %d", ErrInvalid, i)
			}
			st = synBad
		default:
			st = synBad
		}
	}
	if deep {
		return json.Valid(b), nil
	}
	return st == synNext && depth == 0, nil
}

// bitStack holds one bit per nesting level, level d (from 1) at bit d-1.
type bitStack [4]uint64

func (s *bitStack) get(d int) bool { return s[(d-1)>>6]>>((d-1)&63)&1 != 0 }

func (s *bitStack) set(d int, v bool) {
	if v {
		s[(d-1)>>6] |= 1 << ((d - 1) & 63)
	} else {
		s[(d-1)>>6] &^= 1 << ((d - 1) & 63)
	}
}

// Byte classes of checkJSON's scan outside strings; clOther is a syntax
// error.
const (
	clOther = iota
	clSpace
	clQuote
	clOpen
	clClose
	clComma
	clColon
	clLiteral // the first letter of true, false or null
	clNumber  // '-' or a digit
	clHigh    // a byte of a multi-byte UTF-8 sequence, or not UTF-8
)

var byteClass = func() (t [256]uint8) {
	for _, c := range " \t\n\r" {
		t[c] = clSpace
	}
	t['"'], t['{'], t['['], t['}'], t[']'] = clQuote, clOpen, clOpen, clClose, clClose
	t[','], t[':'], t['t'], t['f'], t['n'], t['-'] = clComma, clColon, clLiteral, clLiteral, clLiteral, clNumber
	for c := '0'; c <= '9'; c++ {
		t[c] = clNumber
	}
	for c := utf8.RuneSelf; c < 256; c++ {
		t[c] = clHigh
	}
	return t
}()

// strSpecial marks the bytes a string scan stops at: the quote, the
// backslash, the control characters (not allowed in a string), and every
// byte of a multi-byte UTF-8 sequence.
var strSpecial = func() (t [256]bool) {
	t['"'], t['\\'] = true, true
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	for c := utf8.RuneSelf; c < 256; c++ {
		t[c] = true
	}
	return t
}()

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// scanNumber returns the end of the run of number bytes (isNumberByte) at
// b[i], which the limits take for one number literal, whether the run
// is one JSON number, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?: in
// JSON a number is followed by none of those bytes, and whether that
// number has an exponent.
func scanNumber(b []byte, i int) (end int, ok, exp bool) {
	j := i
	if b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j, ok = j+1, true
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		j, ok = skipDigits(b, j+1), true
	}
	if ok && j < len(b) && b[j] == '.' {
		k := skipDigits(b, j+1)
		ok, j = k > j+1, k
	}
	if ok && j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		exp = true
		k := j + 1
		if k < len(b) && (b[k] == '+' || b[k] == '-') {
			k++
		}
		m := skipDigits(b, k)
		ok, j = m > k, m
	}
	for end = j; end < len(b) && isNumberByte(b[end]); end++ {
	}
	return end, ok && end == j, exp
}

// outOfRange reports whether the JSON number lit, which has an exponent,
// overflows a 64-bit float (1e400): encoding/json and most readers refuse
// to decode it into a number. Only an exponent can take a literal of at
// most MaxNumberLen characters past it; one that underflows reads as 0.
func outOfRange(lit []byte) bool {
	_, err := strconv.ParseFloat(string(lit), 64)
	return err != nil
}

// surrogates checks the \u escape at b[i] (validEscape holds) for UTF-16
// surrogates: a high one (D800-DBFF) must be followed by a \u escape of a
// low one (DC00-DFFF), and a low one must not stand alone. It returns how
// far past i the escape (or the pair) goes, minus its last byte, and false
// for a lone surrogate.
func surrogates(b []byte, i int) (int, bool) {
	r := hex4(b[i+2 : i+6])
	switch {
	case r < 0xD800 || r > 0xDFFF:
		return 5, true
	case r >= 0xDC00:
		return 0, false
	}
	j := i + 6
	if j+5 < len(b) && b[j] == '\\' && b[j+1] == 'u' && isHex(b[j+2]) && isHex(b[j+3]) && isHex(b[j+4]) && isHex(b[j+5]) {
		if lo := hex4(b[j+2 : j+6]); lo >= 0xDC00 && lo <= 0xDFFF {
			return 11, true
		}
	}
	return 0, false
}

// hex4 is the value of four hex digits.
func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// depthError is checkJSON's refusal of a document nested deeper than max
// levels; it wraps ErrInvalid.
type depthError struct{ max int }

func (e *depthError) Error() string {
	return fmt.Sprintf("%v: JSON nested deeper than %d levels", ErrInvalid, e.max)
}

func (e *depthError) Unwrap() error { return ErrInvalid }

func skipDigits(s []byte, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// validEscape reports whether the backslash at b[i] starts a JSON escape:
// one of "\/bfnrt, or u and 4 hex digits.
func validEscape(b []byte, i int) bool {
	if i+1 >= len(b) {
		return false
	}
	switch b[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return true
	case 'u':
		return i+5 < len(b) && isHex(b[i+2]) && isHex(b[i+3]) && isHex(b[i+4]) && isHex(b[i+5])
	}
	return false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
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
