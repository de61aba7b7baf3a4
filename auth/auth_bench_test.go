package auth

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pulsar-relay/relay/persistence"
)

// BenchmarkAuthenticate: the cost of verifying an HS256 access token,
// through the cache (what a publish pays) and without it (once per token
// per CacheTTL).
func BenchmarkAuthenticate(b *testing.B) {
	secret := []byte("bench-secret")
	s, err := New(context.Background(), Config{JWTSecret: secret}, persistence.NewMemoryAuthStore(nil), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "bench", "exp": time.Now().Add(time.Hour).Unix(), "permissions": []string{"read", "write"}, "topics": []string{"bench.*"},
	}).SignedString(secret)
	ctx := context.Background()
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Authenticate(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.authenticate(ctx, tok, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	p, _ := s.Authenticate(ctx, tok)
	b.Run("allow", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := s.Allow(ctx, p, OpWrite, "bench.topic"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
