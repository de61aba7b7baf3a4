package persistence

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// The auth package keeps what every relay instance must agree on (users an
// admin created, refresh-token families, topic owners and grants) in an auth
// store: MemoryAuthStore (one process) or ValkeyAuthStore (shared). The
// records below are what those stores hold; the interface they satisfy is
// auth.Store, defined where it is used.
//
// Valkey keys (hash-tagged like the streams, so a topic's keys share a slot):
//
//	auth:{user:<username>}   string: UserRecord as JSON
//	auth:{rt:<family>}       hash: user_id, username, hash, key, revoked; expires with the family
//	topic:{<topic>}:owner    string: TopicRecord as JSON (owner, description, public, grants)
//	auth:{topics}            set: names of owned topics (the index GET /api/v1/topics reads)
//	auth:{owned:<hash>}      set: names of the topics one owner holds (<hash>: hex SHA-256 of the owner id, which may be an external JWT's sub; auth.RateConfig.OwnedTopics bounds it)
//	auth:{owned:<hash>}:pending  sorted set: names an owner's creates reserved, by the server's time (ms); a minute
//	auth:{granted:<hash>}    set: names of the topics granted to one user (read or write; <hash> as above)
//	auth:{public}            set: names of the public topics
//
// The owner, grantee and public sets are what a user's listing reads
// (VisibleTopics), so it costs what that user may see, not every owned
// topic. They live in other slots than the records, so they are kept
// beside them, not with them: a reader checks each name against its record.

// UserRecord is one user the relay can log in.
type UserRecord struct {
	ID           string    `json:"id"`
	Username     string    `json:"username"`
	PasswordHash string    `json:"password_hash"` // bcrypt
	Permissions  []string  `json:"permissions"`   // read, write, admin
	Topics       []string  `json:"topics,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	// RatePublish and RatePublishBurst override the relay-wide publish limit
	// for this user when > 0.
	RatePublish      float64 `json:"rate_publish,omitempty"`
	RatePublishBurst int     `json:"rate_publish_burst,omitempty"`
}

// RefreshRecord is one login's refresh-token family: only the hash of the
// current (unspent) token is kept.
type RefreshRecord struct {
	Family   string
	UserID   string
	Username string
	Hash     string // hex SHA-256 of the current refresh token
	// Key is the family's secret MAC key (hex; never leaves the relay):
	// every refresh token of the family carries a MAC under it, which
	// tells a spent token from a forged one. "" for a family stored before
	// keys.
	Key     string
	Revoked bool
}

// TopicRecord is an owned topic.
type TopicRecord struct {
	ID          string            `json:"topic_id"`
	Name        string            `json:"topic_name"`
	OwnerID     string            `json:"owner_id"`
	Description string            `json:"description"`
	Public      bool              `json:"public"`
	CreatedAt   time.Time         `json:"created_at"`
	Grants      map[string]string `json:"grants,omitempty"` // user id -> "read" | "write"
}

// MaxLoginsPerUser bounds the refresh-token families (logins) one user
// holds, so one account cannot fill the store: a login past it ends one of
// that user's, its refresh token then invalid. It ends first the oldest
// login never refreshed (a client that logs in again instead of
// refreshing, as pulsar-relay-client's password mode does every token
// life, leaves one behind each time, never to be used again), and only
// when every login was refreshed the least recently refreshed: a client
// holding a refresh token it uses keeps it while others log in.
const MaxLoginsPerUser = 1000

// MaxOwnedTopics bounds the owned topics an auth store keeps (any user with
// write permission may create them); CreateTopic over it fails with
// messages.ErrTooManyTopics and messages.ErrUnavailable (503).
const MaxOwnedTopics = 100_000

// CreateRules are what CreateTopic checks besides the topic being owned
// already (ErrConflict).
type CreateRules struct {
	// OwnedLimit > 0 bounds the owner's topics, atomically across relays
	// sharing a store: at it, ErrOwnedLimit.
	OwnedLimit int
	// Unused refuses (ErrConflict) a topic that holds stored messages: a
	// topic nobody owns is open to every writer, and its owner could then
	// refuse them and delete what they stored.
	Unused bool
}

// ErrOwnedLimit: CreateTopic's owner holds its limit of topics already.
var ErrOwnedLimit = fmt.Errorf("%w: the owner holds its limit of topics", messages.ErrForbidden)

var errInUse = fmt.Errorf("%w: it holds messages published while nobody owned it (an admin may create it)", messages.ErrConflict)

var errTooManyOwned = fmt.Errorf("%w: %w: the relay holds its maximum of %d owned topics", messages.ErrTooManyTopics, messages.ErrUnavailable, MaxOwnedTopics)

// Errors of RotateRefresh, both wrapping messages.ErrUnauthorized.
var (
	// ErrRefreshReused: a spent refresh token was presented again; the
	// store has revoked its whole family.
	ErrRefreshReused = fmt.Errorf("%w: refresh token reused; the login is revoked", messages.ErrUnauthorized)
	// ErrRefreshInvalid: unknown, expired or revoked refresh token.
	ErrRefreshInvalid = fmt.Errorf("%w: refresh token invalid, expired or revoked", messages.ErrUnauthorized)
)

// Key names (see the layout above). Names reaching them are validated
// (topics to [A-Za-z0-9._-], usernames likewise, families are hex), so no
// brace can break a hash tag.
func userKey(name string) string          { return "auth:{user:" + name + "}" }
func refreshKey(family string) string     { return "auth:{rt:" + family + "}" }
func loginsKey(username string) string    { return "auth:{ru:" + username + "}" }     // refreshed logins
func newLoginsKey(username string) string { return "auth:{ru:" + username + "}:new" } // never refreshed
func topicOwnerKey(t string) string       { return "topic:{" + t + "}:owner" }

const (
	topicIndexKey  = "auth:{topics}"
	publicIndexKey = "auth:{public}"
)

func ownedKey(owner string) string   { return "auth:{owned:" + idHash(owner) + "}" }
func pendingKey(owner string) string { return ownedKey(owner) + ":pending" } // same slot
func grantedKey(user string) string  { return "auth:{granted:" + idHash(user) + "}" }

// idHash names a user id in a key: ids may be an external JWT's sub, with
// any characters (a brace would break the hash tag).
func idHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:16])
}

// indexKeys returns the index sets (ownedKey, grantedKey, publicIndexKey)
// that name the topic of t; nil t is in none. Owner "" (auth off) is not
// indexed.
func indexKeys(t *TopicRecord) map[string]struct{} {
	keys := map[string]struct{}{}
	if t == nil {
		return keys
	}
	if t.OwnerID != "" {
		keys[ownedKey(t.OwnerID)] = struct{}{}
	}
	for user := range t.Grants {
		keys[grantedKey(user)] = struct{}{}
	}
	if t.Public {
		keys[publicIndexKey] = struct{}{}
	}
	return keys
}

// indexChange returns the index sets a change of a topic's record from old
// to nw (either nil: created, deleted) adds its name to and removes it from.
func indexChange(old, nw *TopicRecord) (add, remove []string) {
	was, is := indexKeys(old), indexKeys(nw)
	for k := range is {
		if _, ok := was[k]; !ok {
			add = append(add, k)
		}
	}
	for k := range was {
		if _, ok := is[k]; !ok {
			remove = append(remove, k)
		}
	}
	return add, remove
}

func cloneTopic(r TopicRecord) TopicRecord {
	if r.Grants != nil {
		g := make(map[string]string, len(r.Grants))
		for k, v := range r.Grants {
			g[k] = v
		}
		r.Grants = g
	}
	return r
}
