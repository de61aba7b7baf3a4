package auth

import (
	"context"
	"time"

	"github.com/pulsar-relay/relay/persistence"
)

// Store is what auth shares across relay instances. Implementations:
// persistence.MemoryAuthStore and persistence.ValkeyAuthStore.
//
// Errors: a missing user or topic wraps messages.ErrNotFound, a taken name
// messages.ErrConflict, an unreachable store messages.ErrUnavailable.
// RotateRefresh returns persistence.ErrRefreshReused (and has revoked the
// family) when oldHash is not the family's current hash, and
// persistence.ErrRefreshInvalid for an unknown, expired or revoked family.
// RefreshFamily returns a live family's record (ErrRefreshInvalid
// otherwise); RevokeRefreshIfCurrent revokes a live family only when hash
// is its current one, atomically, and reports whether it did.
// Every method is safe for concurrent use, and a change made through one
// instance's Store is seen by every other at once.
type Store interface {
	User(ctx context.Context, username string) (persistence.UserRecord, error)
	CreateUser(ctx context.Context, u persistence.UserRecord) error
	PutUser(ctx context.Context, u persistence.UserRecord) error

	CreateRefresh(ctx context.Context, r persistence.RefreshRecord, ttl time.Duration) error
	RotateRefresh(ctx context.Context, family, oldHash, newHash string, ttl time.Duration) (persistence.RefreshRecord, error)
	RefreshFamily(ctx context.Context, family string) (persistence.RefreshRecord, error)
	RevokeRefresh(ctx context.Context, family string) error
	RevokeRefreshIfCurrent(ctx context.Context, family, hash string) (bool, error)
	RefreshRevoked(ctx context.Context, family string) (bool, error)

	// CreateTopic fails with ErrConflict when the topic is owned or (with
	// rules.Unused) holds stored messages, and with
	// persistence.ErrOwnedLimit when rules.OwnedLimit > 0 and t.OwnerID
	// holds that many (atomically across instances).
	CreateTopic(ctx context.Context, t persistence.TopicRecord, rules persistence.CreateRules) error
	Topic(ctx context.Context, name string) (persistence.TopicRecord, error)
	UpdateTopic(ctx context.Context, name string, fn func(*persistence.TopicRecord) error) (persistence.TopicRecord, error)
	DeleteTopic(ctx context.Context, name string) error
	Topics(ctx context.Context) ([]persistence.TopicRecord, error)
	// VisibleTopics returns, by name, the records of at least every topic
	// user owns, is granted or that is public, read through indexes (its
	// cost follows what user may see); the caller checks each record.
	VisibleTopics(ctx context.Context, user string) ([]persistence.TopicRecord, error)
	// OwnedTopics returns the names of the topics owner holds, sorted.
	OwnedTopics(ctx context.Context, owner string) ([]string, error)
}

var (
	_ Store = (*persistence.MemoryAuthStore)(nil)
	_ Store = (*persistence.ValkeyAuthStore)(nil)
)
