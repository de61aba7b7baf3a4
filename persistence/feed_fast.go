package persistence

import (
	"bytes"
	"encoding/json"

	"github.com/pulsar-relay/relay/messages"
)

// decodeFast reads a notice in exactly the form the append script writes
// it (valkey.go: fixed key order, no whitespace, ids, epoch, topic and
// timestamps without escapes), without encoding/json: decoding every
// notice with it was a sixteenth of a relay's CPU under Valkey ingest. It
// returns false for anything else, and DecodeNotice then uses
// encoding/json, so what is accepted and its meaning do not change
// (FuzzDecodeNotice compares the two). Payloads are slices of b, checked
// with json.Valid; metadata objects go through encoding/json.
func (w *noticeJSON) decodeFast(b []byte) bool {
	rest := b
	str := func(prefix string) (string, bool) {
		var ok bool
		if rest, ok = bytes.CutPrefix(rest, []byte(prefix)); !ok {
			return "", false
		}
		i := bytes.IndexByte(rest, '"')
		if i < 0 {
			return "", false
		}
		s := rest[:i]
		for _, c := range s {
			if c == '\\' || c < 0x20 || c >= 0x80 {
				return "", false
			}
		}
		rest = rest[i+1:]
		return string(s), true
	}
	var ok bool
	if w.Topic, ok = str(`{"topic":"`); !ok {
		return false
	}
	if w.Epoch, ok = str(`,"epoch":"`); !ok {
		return false
	}
	if w.Prev, ok = str(`,"prev":"`); !ok {
		return false
	}
	if w.Last, ok = str(`,"last":"`); !ok {
		return false
	}
	if string(rest) == "}" {
		return true
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"messages":[`)); !ok {
		return false
	}
	w.Messages = make([]noticeMessage, 0, 4)
	for len(rest) > 0 && rest[0] != ']' {
		var m noticeMessage
		if m.ID, ok = str(`{"id":"`); !ok {
			return false
		}
		if m.Timestamp, ok = str(`,"timestamp":"`); !ok {
			return false
		}
		var obj []byte
		if obj, ok = object(&rest, `,"payload":`); !ok || !json.Valid(obj) {
			return false
		}
		m.Payload = obj
		if bytes.HasPrefix(rest, []byte(`,"metadata":`)) {
			if obj, ok = object(&rest, `,"metadata":`); !ok || json.Unmarshal(obj, &m.Metadata) != nil {
				return false
			}
		}
		if bytes.HasPrefix(rest, []byte(`,"expires_at":"`)) {
			if m.ExpiresAt, ok = str(`,"expires_at":"`); !ok {
				return false
			}
		}
		if rest, ok = bytes.CutPrefix(rest, []byte(`}`)); !ok {
			return false
		}
		w.Messages = append(w.Messages, m)
		r, more := bytes.CutPrefix(rest, []byte(`,`))
		if !more {
			break
		}
		if rest = r; len(rest) == 0 || rest[0] != '{' { // a comma before "]" is not JSON
			return false
		}
	}
	return string(rest) == "]}"
}

// object cuts prefix and then one JSON object (its syntax is the caller's
// to check) from the front of *rest.
func object(rest *[]byte, prefix string) ([]byte, bool) {
	b, ok := bytes.CutPrefix(*rest, []byte(prefix))
	if !ok {
		return nil, false
	}
	end := messages.JSONObjectEnd(b, 0)
	if end < 0 {
		return nil, false
	}
	*rest = b[end:]
	return b[:end:end], true
}
