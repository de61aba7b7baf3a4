package loadgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// payload is what every published message carries. See the package doc for
// the meaning of the fields.
type payload struct {
	Seq    uint64 `json:"seq"`
	SentNs int64  `json:"sent_ns"`
	Pub    int    `json:"pub"`
}

// appendPayload appends p as a JSON object to dst, with a "pad" string of pad
// 'x' characters when pad > 0 (to test larger messages).
func appendPayload(dst []byte, p payload, pad int) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, p.Seq, 10)
	dst = append(dst, `,"sent_ns":`...)
	dst = strconv.AppendInt(dst, p.SentNs, 10)
	dst = append(dst, `,"pub":`...)
	dst = strconv.AppendInt(dst, int64(p.Pub), 10)
	if pad > 0 {
		dst = append(dst, `,"pad":"`...)
		for range pad {
			dst = append(dst, 'x')
		}
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// Keys the fast scanner looks for. They occur only in our payload: the
// relay's and Centrifugo's envelopes use none of them.
var (
	keySeq    = []byte(`"seq":`)
	keySentNs = []byte(`"sent_ns":`)
	keyPub    = []byte(`"pub":`)
)

// scanPayload extracts the payload fields from a frame (or a payload object)
// without decoding it: it finds each key and parses the unsigned integer after
// it. ok is false when a key is missing or its value is not a plain integer
// (say, a server re-encoded it as a float); callers then fall back to
// decodePayload.
func scanPayload(frame []byte) (p payload, ok bool) {
	seq, ok1 := scanUint(frame, keySeq)
	sent, ok2 := scanUint(frame, keySentNs)
	pub, ok3 := scanUint(frame, keyPub)
	if !ok1 || !ok2 || !ok3 || sent > 1<<62 || pub > 1<<30 {
		return payload{}, false
	}
	return payload{Seq: seq, SentNs: int64(sent), Pub: int(pub)}, true
}

// scanUint returns the unsigned integer that follows key in b (spaces after
// the colon allowed). The number must end at ',', '}' or a space.
func scanUint(b, key []byte) (uint64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	i += len(key)
	for i < len(b) && b[i] == ' ' {
		i++
	}
	start := i
	var v uint64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' && i-start < 19 {
		v = v*10 + uint64(b[i]-'0')
		i++
	}
	if i == start || i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case ',', '}', ' ':
		return v, true
	}
	return 0, false
}

// decodePayload is the slow, exact path: it decodes a payload object that may
// carry its numbers in any JSON form (1e3, 12.0).
func decodePayload(obj []byte) (payload, error) {
	var raw struct {
		Seq    *json.Number `json:"seq"`
		SentNs *json.Number `json:"sent_ns"`
		Pub    *json.Number `json:"pub"`
	}
	if err := json.Unmarshal(obj, &raw); err != nil {
		return payload{}, fmt.Errorf("decode payload: %w", err)
	}
	if raw.Seq == nil || raw.SentNs == nil || raw.Pub == nil {
		return payload{}, fmt.Errorf("decode payload: missing seq, sent_ns or pub in %.80s", obj)
	}
	seq, err1 := raw.Seq.Float64()
	sent, err2 := raw.SentNs.Float64()
	pub, err3 := raw.Pub.Float64()
	if err1 != nil || err2 != nil || err3 != nil || seq < 0 || sent < 0 || pub < 0 {
		return payload{}, fmt.Errorf("decode payload: bad number in %.80s", obj)
	}
	return payload{Seq: uint64(seq), SentNs: int64(sent), Pub: int(pub)}, nil
}

// scanString returns the JSON string value that follows key (which must end
// in `":"` plus the opening quote, e.g. `"topic":"`). Topic and channel names
// here never contain escapes, so the value ends at the next quote.
func scanString(b, key []byte) ([]byte, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return nil, false
	}
	i += len(key)
	j := bytes.IndexByte(b[i:], '"')
	if j < 0 {
		return nil, false
	}
	v := b[i : i+j]
	if bytes.IndexByte(v, '\\') >= 0 {
		return nil, false
	}
	return v, true
}
