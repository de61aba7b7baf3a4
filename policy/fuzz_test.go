package policy

import (
	"bytes"
	"errors"
	"testing"

	"github.com/pulsar-relay/relay/messages"
)

// FuzzParse: the loader never panics; a refused document names a line
// inside it and wraps ErrInvalid; an accepted one round-trips through its
// JSON document form to the same set.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sample), uint8(0))
	f.Add([]byte(`{"version":1,"topics":{"jobs.*":{"mailbox_size":5,"retention":"1h"},"*":{"anonymous_read":true}}}`), uint8(1))
	f.Add([]byte("topics:\n  a: &x {max_batch: 1}\n  b: *x\n"), uint8(2))
	f.Add([]byte("topics:\n  a:\n    max_batch: [\n"), uint8(2))
	f.Add([]byte(`{"topics":{"a":{"x":[{"y":[1,2,{"z":null}]}]}}}`), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, format uint8) {
		fm := Format(format % 3)
		s, err := Parse(data, fm)
		if err != nil {
			if s != nil {
				t.Fatal("error with a set")
			}
			if !errors.Is(err, messages.ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("no FieldError: %v", err)
			}
			if lines := lineBreaks(data) + 1; fe.Line < 0 || fe.Line > lines {
				t.Fatalf("line %d outside the document's %d lines: %v", fe.Line, lines, err)
			}
			return
		}
		doc, _ := s.MarshalJSON()
		again, err := Parse(doc, JSON)
		if err != nil {
			t.Fatalf("own document refused: %v\n%s", err, doc)
		}
		doc2, _ := again.MarshalJSON()
		if !bytes.Equal(doc, doc2) {
			t.Fatalf("round trip:\n%s\n%s", doc, doc2)
		}
		for _, r := range s.Rules() {
			if topic := r.Pattern; topic != "*" && topic[len(topic)-1] != '*' {
				if m := s.Match(topic); len(m) == 0 || m[0].Pattern != topic {
					t.Fatalf("exact rule %q does not win for its topic: %v", topic, m)
				}
			}
		}
	})
}

// lineBreaks counts what YAML may take as a line break: \n, \r, NEL, LS, PS.
func lineBreaks(data []byte) int {
	n := 0
	for _, r := range string(data) {
		switch r {
		case '\n', '\r', '\u0085', '\u2028', '\u2029':
			n++
		}
	}
	return n
}
