package auth

import (
	"context"
	"fmt"
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

// BenchmarkListTopicsAmongMany: one user's GET /api/v1/topics on the
// memory store when others own 100,000 topics and the user may see 12 (10
// its own, one granted, one public). A listing that read every owned
// record cost what others own, not what the user may see.
func BenchmarkListTopicsAmongMany(b *testing.B) {
	s, err := New(context.Background(), Config{JWTSecret: []byte("bench-secret")}, persistence.NewMemoryAuthStore(nil), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	other := &Principal{ID: "other", Kind: KindUser, Perms: PermRead | PermWrite}
	user := &Principal{ID: "user", Kind: KindUser, Perms: PermRead | PermWrite}
	for i := range 100_000 - 12 {
		if _, err := s.CreateTopic(ctx, other, fmt.Sprintf("other.%06d", i), ""); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 10 {
		if _, err := s.CreateTopic(ctx, user, fmt.Sprintf("user.%d", i), ""); err != nil {
			b.Fatal(err)
		}
	}
	for _, name := range []string{"shared.granted", "shared.public"} {
		if _, err := s.CreateTopic(ctx, other, name, ""); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.Grant(ctx, other, "shared.granted", "user", "read"); err != nil {
		b.Fatal(err)
	}
	public := true
	if _, err := s.UpdateTopic(ctx, other, "shared.public", TopicUpdate{Public: &public}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		ts, err := s.ListTopics(ctx, user)
		if err != nil || len(ts) != 12 {
			b.Fatalf("listed %d topics (%v), want 12", len(ts), err)
		}
	}
}
