package auth

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pulsar-relay/relay/persistence"
)

// FuzzAuthenticate: no input panics, and none authenticates as anyone but
// the subject of the one valid token (with its permissions).
func FuzzAuthenticate(f *testing.F) {
	secret := []byte("fuzz-secret")
	s, err := New(context.Background(), Config{JWTSecret: secret, APIKeysFile: ""}, persistence.NewMemoryAuthStore(nil), nil)
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	valid, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "fuzz", "exp": time.Now().Add(time.Hour).Unix(), "permissions": []string{"read"}}).SignedString(secret)
	f.Add(valid)
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add(valid[:len(valid)-1])
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := s.authenticate(context.Background(), tok, time.Now())
		if err != nil {
			return
		}
		if p.ID != "fuzz" || p.Perms != PermRead || len(p.Topics) != 0 {
			t.Fatalf("%q authenticated as %+v", tok, p)
		}
	})
}
