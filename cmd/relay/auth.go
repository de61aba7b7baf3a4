package main

import (
	"context"
	"log/slog"

	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/persistence"
)

// newAuth builds the auth service on the store's shared state: Valkey when
// the relay persists there (so every instance agrees on logins, owners and
// grants), else process memory.
func newAuth(ctx context.Context, cfg *config, store persistence.Store, logger *slog.Logger) (*auth.Service, error) {
	var as auth.Store
	switch s := store.(type) {
	case *persistence.ValkeyStore:
		as = persistence.NewValkeyAuthStore(s)
	case *persistence.MemoryStore:
		as = persistence.NewMemoryAuthStore(s)
	default:
		as = persistence.NewMemoryAuthStore(nil)
	}
	return auth.New(ctx, cfg.Auth, as, logger)
}
