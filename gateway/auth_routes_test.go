package gateway

import (
	"strings"
	"testing"
)

// The per-username login limiter's keys stay small whatever the client
// sends, and still tell names apart (case aside).
func TestLoginKeyIsBounded(t *testing.T) {
	long := strings.Repeat("a", 60<<10)
	if k := loginKey(long); len(k) > 80 {
		t.Fatalf("a 60 KiB username makes a %d-byte limiter key", len(k))
	}
	if loginKey(long+"x") == loginKey(long+"y") || loginKey(long+"x") != loginKey(strings.ToUpper(long)+"X") {
		t.Fatal("long usernames: keys do not follow the names")
	}
	if loginKey("Alice") != "login:alice" {
		t.Fatalf("short name key %q", loginKey("Alice"))
	}
}
