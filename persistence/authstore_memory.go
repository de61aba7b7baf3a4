package persistence

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// maxMemoryFamilies bounds the refresh-token families a MemoryAuthStore
// keeps; expired ones are swept first, and a login over the bound is refused
// (503) rather than growing the map.
const maxMemoryFamilies = 1 << 20

// MemoryAuthStore keeps users, refresh-token families and topic owners in
// process memory (one relay instance; lost on restart). It satisfies
// auth.Store.
//
// Concurrency: safe for concurrent use.
type MemoryAuthStore struct {
	msgs *MemoryStore // messages of a deleted topic go too; may be nil

	mu        sync.Mutex
	users     map[string]UserRecord
	families  map[string]memFamily
	byUser    map[string][]string // username -> its families, least recently used first (some may be gone)
	maxLogins int                 // MaxLoginsPerUser; tests set fewer
	topics    map[string]TopicRecord
	index     map[string]map[string]struct{} // index set (indexKeys) -> names of its topics
}

type memFamily struct {
	rec       RefreshRecord
	expires   time.Time
	refreshed bool // rotated at least once (see MaxLoginsPerUser)
}

// NewMemoryAuthStore returns an empty store. msgs (may be nil) is the
// message store whose topic DeleteTopic also empties.
func NewMemoryAuthStore(msgs *MemoryStore) *MemoryAuthStore {
	return &MemoryAuthStore{msgs: msgs, users: map[string]UserRecord{}, families: map[string]memFamily{}, byUser: map[string][]string{}, maxLogins: MaxLoginsPerUser, topics: map[string]TopicRecord{}, index: map[string]map[string]struct{}{}}
}

// User returns the user named name, or an error wrapping messages.ErrNotFound.
func (m *MemoryAuthStore) User(_ context.Context, name string) (UserRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[name]
	if !ok {
		return UserRecord{}, fmt.Errorf("user %q: %w", name, messages.ErrNotFound)
	}
	return u, nil
}

// CreateUser adds u, or fails with messages.ErrConflict when its name is taken.
func (m *MemoryAuthStore) CreateUser(_ context.Context, u UserRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.users[u.Username]; ok {
		return fmt.Errorf("user %q: %w", u.Username, messages.ErrConflict)
	}
	m.users[u.Username] = u
	return nil
}

// PutUser creates or replaces u.
func (m *MemoryAuthStore) PutUser(_ context.Context, u UserRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users[u.Username] = u
	return nil
}

// CreateRefresh stores a new family that lives ttl.
func (m *MemoryAuthStore) CreateRefresh(_ context.Context, r RefreshRecord, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if len(m.families) >= maxMemoryFamilies {
		for k, f := range m.families {
			if now.After(f.expires) {
				delete(m.families, k)
			}
		}
		if len(m.families) >= maxMemoryFamilies {
			return fmt.Errorf("%w: too many live logins", messages.ErrUnavailable)
		}
	}
	// The user's families still held (revoked ones too: they take room
	// until they expire), least recently used first; past
	// MaxLoginsPerUser the first never refreshed goes, else the first.
	held := m.byUser[r.Username][:0]
	for _, id := range m.byUser[r.Username] {
		if f, ok := m.families[id]; ok && now.Before(f.expires) {
			held = append(held, id)
		}
	}
	for len(held) >= m.maxLogins {
		i := slices.IndexFunc(held, func(id string) bool { return !m.families[id].refreshed })
		if i < 0 {
			i = 0
		}
		delete(m.families, held[i])
		held = slices.Delete(held, i, i+1)
	}
	m.byUser[r.Username] = append(held, r.Family)
	m.families[r.Family] = memFamily{rec: r, expires: now.Add(ttl)}
	return nil
}

// RefreshFamilies is the number of refresh-token families held (for
// relay_auth_entries).
func (m *MemoryAuthStore) RefreshFamilies() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.families)
}

// RotateRefresh replaces the family's current hash oldHash by newHash and
// extends its life to ttl. A hash that is not the current one revokes the
// family and returns ErrRefreshReused; an unknown, expired or revoked family
// returns ErrRefreshInvalid.
func (m *MemoryAuthStore) RotateRefresh(_ context.Context, family, oldHash, newHash string, ttl time.Duration) (RefreshRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	f, ok := m.liveLocked(family, now)
	if !ok {
		return RefreshRecord{}, ErrRefreshInvalid
	}
	if f.rec.Hash != oldHash {
		f.rec.Revoked = true
		m.families[family] = f
		return RefreshRecord{}, ErrRefreshReused
	}
	f.rec.Hash = newHash
	f.expires = now.Add(ttl)
	f.refreshed = true
	m.families[family] = f
	// Used now: last in its user's list (MaxLoginsPerUser ends the least
	// recently used first).
	if list := m.byUser[f.rec.Username]; len(list) > 0 && list[len(list)-1] != family {
		if i := slices.Index(list, family); i >= 0 {
			m.byUser[f.rec.Username] = append(slices.Delete(list, i, i+1), family)
		}
	}
	return f.rec, nil
}

// RefreshFamily returns the family's record, or ErrRefreshInvalid when it
// is unknown, expired or revoked.
func (m *MemoryAuthStore) RefreshFamily(_ context.Context, family string) (RefreshRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.liveLocked(family, time.Now())
	if !ok {
		return RefreshRecord{}, ErrRefreshInvalid
	}
	return f.rec, nil
}

// RevokeRefreshIfCurrent revokes the family only when it is live and hash
// is its current hash, and reports whether it did.
func (m *MemoryAuthStore) RevokeRefreshIfCurrent(_ context.Context, family, hash string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.liveLocked(family, time.Now())
	if !ok || f.rec.Hash != hash {
		return false, nil
	}
	f.rec.Revoked = true
	m.families[family] = f
	return true, nil
}

// RevokeRefresh revokes the family (no error when it is unknown).
func (m *MemoryAuthStore) RevokeRefresh(_ context.Context, family string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.families[family]; ok {
		f.rec.Revoked = true
		m.families[family] = f
	}
	return nil
}

// RefreshRevoked reports whether the family is revoked, expired or unknown.
func (m *MemoryAuthStore) RefreshRevoked(_ context.Context, family string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, live := m.liveLocked(family, time.Now())
	return !live, nil
}

// liveLocked returns the family when it is known, not expired at now and
// not revoked (m.mu held).
func (m *MemoryAuthStore) liveLocked(family string, now time.Time) (memFamily, bool) {
	f, ok := m.families[family]
	return f, ok && !now.After(f.expires) && !f.rec.Revoked
}

// CreateTopic records t, or fails with messages.ErrConflict when it is
// owned or (rules.Unused) holds stored messages, or ErrOwnedLimit
// (rules.OwnedLimit).
func (m *MemoryAuthStore) CreateTopic(_ context.Context, t TopicRecord, rules CreateRules) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.topics[t.Name]; ok {
		return fmt.Errorf("topic %q: %w", t.Name, messages.ErrConflict)
	}
	// In the Valkey store's order: the bound, then whether it is in use.
	if len(m.topics) >= MaxOwnedTopics {
		return errTooManyOwned
	}
	if rules.OwnedLimit > 0 && t.OwnerID != "" && len(m.index[ownedKey(t.OwnerID)]) >= rules.OwnedLimit {
		return ErrOwnedLimit
	}
	if rules.Unused && m.msgs != nil && m.msgs.holdsMessages(t.Name) {
		return fmt.Errorf("topic %q: %w", t.Name, errInUse)
	}
	t = cloneTopic(t)
	m.topics[t.Name] = t
	m.reindexLocked(t.Name, nil, &t)
	return nil
}

// reindexLocked moves name from the index sets of old to those of nw
// (m.mu held).
func (m *MemoryAuthStore) reindexLocked(name string, old, nw *TopicRecord) {
	add, remove := indexChange(old, nw)
	for _, k := range add {
		names := m.index[k]
		if names == nil {
			names = map[string]struct{}{}
			m.index[k] = names
		}
		names[name] = struct{}{}
	}
	for _, k := range remove {
		delete(m.index[k], name)
		if len(m.index[k]) == 0 {
			delete(m.index, k)
		}
	}
}

// OwnedTopics returns the names of the topics owner holds, sorted.
func (m *MemoryAuthStore) OwnedTopics(_ context.Context, owner string) ([]string, error) {
	if owner == "" {
		return []string{}, nil
	}
	m.mu.Lock()
	names := m.index[ownedKey(owner)]
	out := make([]string, 0, len(names))
	for name := range names {
		out = append(out, name)
	}
	m.mu.Unlock()
	sort.Strings(out)
	return out, nil
}

// VisibleTopics returns, by name, the records of the topics user owns, is
// granted or that are public: what user's listing may show, read through
// the indexes, not every record. The caller still checks each record
// against the user's rights.
func (m *MemoryAuthStore) VisibleTopics(_ context.Context, user string) ([]TopicRecord, error) {
	m.mu.Lock()
	seen := map[string]struct{}{}
	var out []TopicRecord
	for _, k := range []string{ownedKey(user), grantedKey(user), publicIndexKey} {
		for name := range m.index[k] {
			if _, ok := seen[name]; !ok {
				seen[name] = struct{}{}
				out = append(out, m.topics[name])
			}
		}
	}
	m.mu.Unlock()
	return sortedClones(out), nil
}

// Topic returns the record of topic name, or messages.ErrNotFound.
func (m *MemoryAuthStore) Topic(_ context.Context, name string) (TopicRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.topics[name]
	if !ok {
		return TopicRecord{}, fmt.Errorf("topic %q: %w", name, messages.ErrNotFound)
	}
	return cloneTopic(t), nil
}

// UpdateTopic applies fn to the topic's record atomically and stores the result.
func (m *MemoryAuthStore) UpdateTopic(_ context.Context, name string, fn func(*TopicRecord) error) (TopicRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.topics[name]
	if !ok {
		return TopicRecord{}, fmt.Errorf("topic %q: %w", name, messages.ErrNotFound)
	}
	nw := cloneTopic(t)
	if err := fn(&nw); err != nil {
		return TopicRecord{}, err
	}
	m.topics[name] = nw
	m.reindexLocked(name, &t, &nw)
	return cloneTopic(nw), nil
}

// DeleteTopic removes the topic's record and its stored messages.
func (m *MemoryAuthStore) DeleteTopic(_ context.Context, name string) error {
	m.mu.Lock()
	t, ok := m.topics[name]
	if ok {
		delete(m.topics, name)
		m.reindexLocked(name, &t, nil)
	}
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("topic %q: %w", name, messages.ErrNotFound)
	}
	if m.msgs != nil {
		m.msgs.dropTopic(name)
	}
	return nil
}

// Topics returns every owned topic, by name. Only a shallow copy is made
// under the store's lock (a stored record is never changed in place:
// UpdateTopic stores a changed copy), so a long listing does not hold up
// logins and permission checks while it copies grants.
func (m *MemoryAuthStore) Topics(_ context.Context) ([]TopicRecord, error) {
	m.mu.Lock()
	out := make([]TopicRecord, 0, len(m.topics))
	for _, t := range m.topics {
		out = append(out, t)
	}
	m.mu.Unlock()
	return sortedClones(out), nil
}

// sortedClones clones records copied shallowly under the lock (outside it)
// and sorts them by name.
func sortedClones(out []TopicRecord) []TopicRecord {
	if out == nil {
		out = []TopicRecord{}
	}
	for i := range out {
		out[i] = cloneTopic(out[i])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
