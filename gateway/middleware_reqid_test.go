package gateway

import (
	"regexp"
	"testing"
)

// TestNewRequestID: 16 lowercase hex digits, no repeats.
func TestNewRequestID(t *testing.T) {
	hex16 := regexp.MustCompile(`^[0-9a-f]{16}$`)
	seen := make(map[string]bool)
	for range 10000 {
		id := newRequestID()
		if !hex16.MatchString(id) {
			t.Fatalf("request id %q is not 16 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("request id %q repeated", id)
		}
		seen[id] = true
	}
}
