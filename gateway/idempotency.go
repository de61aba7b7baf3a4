package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/pulsar-relay/relay/messages"
)

// Idempotent publish (the gateway's part).
//
// A publish may carry "Idempotency-Key: <1..255 printable ASCII>". The
// gateway checks the key, hashes the request's canonical body and puts both
// on the message; the store appends at most one message per (topic, key)
// within messages.IdempotencyWindow and marks a repeat Duplicate (with the
// first message's id and timestamp) or, when the body differs, Conflict.
// The gateway answers a Duplicate exactly as it answered the first request
// and a Conflict with 422 IDEMPOTENCY_KEY_REUSED.
//
// A bulk publish's key covers the whole request: item i is stored under
// "<key>#<i>" with the hash of the whole request, so a retried bulk returns
// the same results and a different bulk under the same key conflicts.

// IdempotencyHeader is the request header naming an idempotency key.
const IdempotencyHeader = "Idempotency-Key"

// maxIdempotencyKey is the longest key accepted.
const maxIdempotencyKey = 255

// idempotencyKey returns the request's Idempotency-Key ("" when absent), or
// an error wrapping ErrInvalid when it is empty, too long or not printable
// ASCII.
func idempotencyKey(r *http.Request) (string, error) {
	vals, ok := r.Header[IdempotencyHeader]
	if !ok {
		return "", nil
	}
	if len(vals) != 1 {
		return "", fmt.Errorf("%w: send one %s header", messages.ErrInvalid, IdempotencyHeader)
	}
	return validIdempotencyKey(vals[0])
}

func validIdempotencyKey(k string) (string, error) {
	if len(k) < 1 || len(k) > maxIdempotencyKey {
		return "", fmt.Errorf("%w: %s must be 1..%d characters", messages.ErrInvalid, IdempotencyHeader, maxIdempotencyKey)
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return "", fmt.Errorf("%w: %s must be printable ASCII", messages.ErrInvalid, IdempotencyHeader)
		}
	}
	return k, nil
}

// publishHash is the RequestHash of a single publish: sha256 over the
// validated request re-encoded (compact payload, metadata keys sorted), so
// whitespace and member order of the envelope do not matter.
func publishHash(req messages.PublishRequest) string {
	h := sha256.New()
	writeCanonical(h, req)
	return hex.EncodeToString(h.Sum(nil))
}

// bulkHash is the RequestHash of a whole bulk publish: each item in its
// canonical form (or compacted, when it is invalid), in order.
func bulkHash(items []json.RawMessage) string {
	h := sha256.New()
	for i, raw := range items {
		h.Write([]byte(strconv.Itoa(i)))
		h.Write([]byte{0})
		if req, err := messages.DecodePublish(raw); err == nil {
			writeCanonical(h, req)
		} else {
			var b bytes.Buffer
			if json.Compact(&b, raw) != nil {
				b.Write(raw)
			}
			h.Write(b.Bytes())
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func writeCanonical(w interface{ Write([]byte) (int, error) }, req messages.PublishRequest) {
	b, _ := json.Marshal(req) // fields in struct order, map keys sorted; cannot fail
	_, _ = w.Write(b)
}

// bulkItemKey is the key of item i of a bulk publish with key k.
func bulkItemKey(k string, i int) string { return k + "#" + strconv.Itoa(i) }
