package persistence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/pulsar-relay/relay/messages"
)

// ValkeyAuthStore keeps users, refresh-token families and topic owners in
// the Valkey of a ValkeyStore (layout in authstore.go), so every relay
// instance on that Valkey sees a rotation, a revocation or a new owner at
// once. It satisfies auth.Store.
//
// Errors wrap messages.ErrUnavailable when Valkey cannot answer.
// Concurrency: safe for concurrent use.
type ValkeyAuthStore struct {
	s         *ValkeyStore
	maxLogins int         // MaxLoginsPerUser; tests set fewer
	indexed   atomic.Bool // the indexes are known to be built (ensureIndexes)
}

// NewValkeyAuthStore returns the auth store sharing s's connection. Closing
// s closes it.
func NewValkeyAuthStore(s *ValkeyStore) *ValkeyAuthStore {
	return &ValkeyAuthStore{s: s, maxLogins: MaxLoginsPerUser}
}

func (a *ValkeyAuthStore) client(ctx context.Context) (valkey.Client, context.Context, context.CancelFunc, error) {
	c, err := a.s.conn()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.s.timeout)
	return c, ctx, cancel, nil
}

func unavailable(op string, err error) error {
	return fmt.Errorf("valkey: %s: %w: %w", op, messages.ErrUnavailable, err)
}

// User returns the user named name, or an error wrapping messages.ErrNotFound.
func (a *ValkeyAuthStore) User(ctx context.Context, name string) (UserRecord, error) {
	c, ctx, cancel, err := a.client(ctx)
	if err != nil {
		return UserRecord{}, err
	}
	defer cancel()
	text, err := c.Do(ctx, c.B().Get().Key(userKey(name)).Build()).ToString()
	if valkey.IsValkeyNil(err) {
		return UserRecord{}, fmt.Errorf("user %q: %w", name, messages.ErrNotFound)
	}
	if err != nil {
		return UserRecord{}, unavailable("get user", err)
	}
	var u UserRecord
	if err := json.Unmarshal([]byte(text), &u); err != nil {
		return UserRecord{}, fmt.Errorf("valkey: user %q: decode: %w", name, err)
	}
	return u, nil
}

func (a *ValkeyAuthStore) setUser(ctx context.Context, u UserRecord, nx bool) error {
	c, ctx, cancel, err := a.client(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	b, _ := json.Marshal(u)
	cmd := c.B().Set().Key(userKey(u.Username)).Value(string(b))
	var res valkey.ValkeyResult
	if nx {
		res = c.Do(ctx, cmd.Nx().Build())
	} else {
		res = c.Do(ctx, cmd.Build())
	}
	if err := res.Error(); valkey.IsValkeyNil(err) {
		return fmt.Errorf("user %q: %w", u.Username, messages.ErrConflict)
	} else if err != nil {
		return unavailable("set user", err)
	}
	return nil
}

// CreateUser adds u, or fails with messages.ErrConflict when its name is taken.
func (a *ValkeyAuthStore) CreateUser(ctx context.Context, u UserRecord) error {
	return a.setUser(ctx, u, true)
}

// PutUser creates or replaces u.
func (a *ValkeyAuthStore) PutUser(ctx context.Context, u UserRecord) error {
	return a.setUser(ctx, u, false)
}

// CreateRefresh stores a new family that lives ttl.
func (a *ValkeyAuthStore) CreateRefresh(ctx context.Context, r RefreshRecord, ttl time.Duration) error {
	c, ctx, cancel, err := a.client(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	key := refreshKey(r.Family)
	res := c.DoMulti(ctx,
		c.B().Hset().Key(key).FieldValue().FieldValue("user_id", r.UserID).FieldValue("username", r.Username).
			FieldValue("hash", r.Hash).FieldValue("key", r.Key).FieldValue("revoked", "0").Build(),
		c.B().Pexpire().Key(key).Milliseconds(ttl.Milliseconds()).Build())
	for _, x := range res {
		if err := x.Error(); err != nil {
			return unavailable("create refresh", err)
		}
	}
	// The user's logins, in two sorted sets by when each was last used:
	// never refreshed and refreshed (RotateRefresh moves a login). Past
	// MaxLoginsPerUser the oldest never refreshed go, then the least
	// recently refreshed. The index is its own slot, so the families it
	// ends are deleted with commands of their own; a login made at the
	// same moment on another instance may pass the bound by one for that
	// moment.
	now := time.Now().UnixMilli()
	over, err := loginsScript.Exec(ctx, c, []string{newLoginsKey(r.Username), loginsKey(r.Username)}, []string{
		strconv.FormatInt(now, 10), strconv.FormatInt(ttl.Milliseconds(), 10), r.Family, strconv.Itoa(a.maxLogins),
	}).AsStrSlice()
	if err != nil {
		return unavailable("create refresh", err)
	}
	if len(over) == 0 {
		return nil
	}
	dels := make(valkey.Commands, 0, len(over))
	for _, family := range over {
		dels = append(dels, c.B().Del().Key(refreshKey(family)).Build())
	}
	for _, x := range c.DoMulti(ctx, dels...) {
		if err := x.Error(); err != nil {
			return unavailable("end the oldest login", err)
		}
	}
	return nil
}

// loginsScript: KEYS[1] a user's logins never refreshed, KEYS[2] those
// refreshed (sorted sets of families by the ms each was last used); ARGV
// now ms, ttl ms, the new family, the maximum. It drops what is older than
// the ttl, adds the family to KEYS[1], and pops and returns the logins
// beyond the maximum: the oldest of KEYS[1] (never the new one), then the
// oldest of KEYS[2].
var loginsScript = valkey.NewLuaScript(`
local cut = tonumber(ARGV[1]) - tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cut)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cut)
local out = {}
local over = redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) + 1 - tonumber(ARGV[4])
if over > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], over)
  for i = 1, #popped, 2 do out[#out + 1] = popped[i] end
  over = over - #popped / 2
  if over > 0 then
    popped = redis.call('ZPOPMIN', KEYS[2], over)
    for i = 1, #popped, 2 do out[#out + 1] = popped[i] end
  end
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return out
`)

// refreshedScript: KEYS[1] and KEYS[2] as loginsScript's; ARGV now ms,
// the family, ttl ms. A login known to the index moves to KEYS[2] at now.
var refreshedScript = valkey.NewLuaScript(`
if redis.call('ZREM', KEYS[1], ARGV[2]) == 1 or redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return 0
`)

// rotateScript: KEYS[1] the family; ARGV old hash, new hash, ttl ms.
// Returns {1, user_id, username} on success, {0} unknown/expired/revoked,
// {-1} reuse (the family is now revoked).
var rotateScript = valkey.NewLuaScript(`
local h = redis.call('HMGET', KEYS[1], 'hash', 'revoked', 'user_id', 'username')
if not h[1] or h[2] == '1' then return {0} end
if h[1] ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'revoked', '1')
  return {-1}
end
redis.call('HSET', KEYS[1], 'hash', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, h[3], h[4]}
`)

// RotateRefresh replaces the family's current hash oldHash by newHash, in
// one atomic script. A hash that is not the current one revokes the family
// and returns ErrRefreshReused; an unknown, expired or revoked family returns
// ErrRefreshInvalid.
func (a *ValkeyAuthStore) RotateRefresh(ctx context.Context, family, oldHash, newHash string, ttl time.Duration) (RefreshRecord, error) {
	c, ctx, cancel, err := a.client(ctx)
	if err != nil {
		return RefreshRecord{}, err
	}
	defer cancel()
	reply, err := rotateScript.Exec(ctx, c, []string{refreshKey(family)},
		[]string{oldHash, newHash, strconv.FormatInt(ttl.Milliseconds(), 10)}).ToArray()
	if err != nil || len(reply) == 0 {
		return RefreshRecord{}, unavailable("rotate refresh", errors.Join(err, errors.New("empty reply")))
	}
	code, _ := reply[0].AsInt64()
	switch {
	case code == -1:
		return RefreshRecord{}, ErrRefreshReused
	case code != 1 || len(reply) < 3:
		return RefreshRecord{}, ErrRefreshInvalid
	}
	uid, _ := reply[1].ToString()
	name, _ := reply[2].ToString()
	// Refreshed now: the user's logins index (another slot) moves it to the
	// refreshed, last, and lives as long as it does. Best effort: the
	// rotation is done, and a client must get its new token; an index left
	// behind only makes MaxLoginsPerUser forget this login a ttl early.
	_ = refreshedScript.Exec(ctx, c, []string{newLoginsKey(name), loginsKey(name)},
		[]string{strconv.FormatInt(time.Now().UnixMilli(), 10), family, strconv.FormatInt(ttl.Milliseconds(), 10)}).Error()
	return RefreshRecord{Family: family, UserID: uid, Username: name, Hash: newHash}, nil
}

// RefreshFamily returns the family's record, or ErrRefreshInvalid when it
// is unknown, expired or revoked.
func (a *ValkeyAuthStore) RefreshFamily(ctx context.Context, family string) (RefreshRecord, error) {
	c, ctx, cancel, err := a.client(ctx)
	if err != nil {
		return RefreshRecord{}, err
	}
	defer cancel()
	vals, err := c.Do(ctx, c.B().Hmget().Key(refreshKey(family)).Field("hash", "revoked", "user_id", "username", "key").Build()).ToArray()
	if err != nil {
		return RefreshRecord{}, unavailable("get refresh", err)
	}
	if len(vals) < 5 || vals[0].IsNil() {
		return RefreshRecord{}, ErrRefreshInvalid
	}
	str := func(i int) string { v, _ := vals[i].ToString(); return v } // nil: ""
	if str(1) == "1" {
		return RefreshRecord{}, ErrRefreshInvalid
	}
	return RefreshRecord{Family: family, Hash: str(0), UserID: str(2), Username: str(3), Key: str(4)}, nil
}

// revokeIfCurrentScript: KEYS[1] the family; ARGV[1] a hash. Revokes a live
// family whose current hash is ARGV[1]; returns 1 when it did, else 0.
var revokeIfCurrentScript = valkey.NewLuaScript(`
local h = redis.call('HMGET', KEYS[1], 'hash', 'revoked')
if not h[1] or h[2] == '1' or h[1] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'revoked', '1')
return 1
`)

// RevokeRefreshIfCurrent revokes the family only when it is live and hash
// is its current hash (one atomic script), and reports whether it did.
func (a *ValkeyAuthStore) RevokeRefreshIfCurrent(ctx context.Context, family, hash string) (bool, error) {
	c, ctx, cancel, err := a.client(ctx)
	if err != nil {
		return false, err
	}
	defer cancel()
	n, err := revokeIfCurrentScript.Exec(ctx, c, []string{refreshKey(family)}, []string{hash}).AsInt64()
	if err != nil {
		return false, unavailable("revoke refresh", err)
	}
	return n == 1, nil
}

// RevokeRefresh revokes the family (no error when it is unknown).
func (a *ValkeyAuthStore) RevokeRefresh(ctx context.Context, family string) error {
	c, ctx, cancel, err := a.client(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if err := revokeScript.Exec(ctx, c, []string{refreshKey(family)}, nil).Error(); err != nil {
		return unavailable("revoke refresh", err)
	}
	return nil
}

// revokeScript marks an existing family revoked (keeping its expiry).
var revokeScript = valkey.NewLuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'revoked', '1') end
return 0
`)

// RefreshRevoked reports whether the family is revoked, expired or unknown.
func (a *ValkeyAuthStore) RefreshRevoked(ctx context.Context, family string) (bool, error) {
	c, ctx, cancel, err := a.client(ctx)
	if err != nil {
		return false, err
	}
	defer cancel()
	vals, err := c.Do(ctx, c.B().Hmget().Key(refreshKey(family)).Field("hash", "revoked").Build()).ToArray()
	if err != nil {
		return false, unavailable("refresh status", err)
	}
	if len(vals) < 2 || vals[0].IsNil() {
		return true, nil
	}
	rev, _ := vals[1].ToString()
	return rev == "1", nil
}

// createTopicScript: SET NX of the record; 1 when the topic was not owned,
// 0 when it was, 2 when ARGV[2] is "1" and its stream holds messages. KEYS[1]
// owner key, KEYS[2] stream (same slot); ARGV[1] record. (The indexes are
// other slots: CreateTopic reserves the owner's place first and adds to
// the topic index after, each with its own command.)
var createTopicScript = valkey.NewLuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[2] == '1' and redis.call('XLEN', KEYS[2]) > 0 then return 2 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`)

// reserveOwnedScript adds a topic to its owner's index if the owner holds
// fewer than its limit, in one step, so that relays creating at once
// cannot pass the bound together, and notes the name as pending (KEYS[2],
// scored by the server's time) so that OwnedTopics does not take a
// reservation whose record is not written yet for a stale name (which
// freed its place for another create: the bound passed). KEYS[1] ownedKey,
// KEYS[2] pendingKey (same slot); ARGV[1] topic, ARGV[2] limit. Returns 2
// when the name is in the index already, 1 when added, 0 at the limit.
var reserveOwnedScript = valkey.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ` + pendingMs + `)
local function pending()
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ` + pendingMs + `)
end
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  pending()
  return 2
end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
pending()
return 1
`)

// pendingMs is how long a reservation counts as in flight (ms): past any
// create's store timeout.
const pendingMs = "60000"

// unindexStaleScript takes names out of an owner's index unless a create
// reserved them within pendingMs. KEYS[1] ownedKey, KEYS[2] pendingKey;
// ARGV the names. Returns how many left.
var unindexStaleScript = valkey.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = 0
for i = 1, #ARGV do
  local at = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if not at or tonumber(at) < now - ` + pendingMs + ` then
    n = n + redis.call('SREM', KEYS[1], ARGV[i])
  end
end
return n
`)

// CreateTopic records t, or fails with messages.ErrConflict when it is
// owned or (rules.Unused) holds stored messages, or ErrOwnedLimit
// (rules.OwnedLimit; a topic owned already is still ErrConflict). The
// owner's place is reserved in its index before the record is written, so
// the bound holds across relays; a create that is refused gives it back.
func (a *ValkeyAuthStore) CreateTopic(ctx context.Context, t TopicRecord, rules CreateRules) error {
	c, ctx, cancel, err := a.indexedClient(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if n, err := c.Do(ctx, c.B().Scard().Key(topicIndexKey).Build()).AsInt64(); err != nil {
		return unavailable("count topics", err)
	} else if n >= MaxOwnedTopics {
		return errTooManyOwned
	}
	reserved := false
	if t.OwnerID != "" {
		limit := rules.OwnedLimit
		if limit <= 0 {
			limit = MaxOwnedTopics
		}
		reserve := func() (int64, error) {
			return reserveOwnedScript.Exec(ctx, c, []string{ownedKey(t.OwnerID), pendingKey(t.OwnerID)}, []string{t.Name, strconv.Itoa(limit)}).AsInt64()
		}
		r, err := reserve()
		if err == nil && r == 0 {
			// At the bound: names gone stale (an earlier relay's deletes,
			// a create that failed after reserving) leave first, if the
			// owner's records can be checked in time.
			if a.unindexDeleted(ctx, c, t.OwnerID) == nil {
				r, err = reserve()
			}
		}
		if err != nil {
			return unavailable("reserve owned topic", err)
		}
		if r == 0 {
			if n, err := c.Do(ctx, c.B().Exists().Key(topicOwnerKey(t.Name)).Build()).AsInt64(); err != nil {
				return unavailable("get topic", err)
			} else if n == 1 {
				return fmt.Errorf("topic %q: %w", t.Name, messages.ErrConflict)
			}
			return ErrOwnedLimit
		}
		reserved = r == 1
	}
	b, _ := json.Marshal(t)
	unused := "0"
	if rules.Unused {
		unused = "1"
	}
	n, err := createTopicScript.Exec(ctx, c, []string{topicOwnerKey(t.Name), streamKey(t.Name)}, []string{string(b), unused}).AsInt64()
	if err != nil {
		return unavailable("create topic", err)
	}
	if n != 1 {
		// Give the place back, unless the topic is the owner's already: a
		// create of the same name at once, whose reservation found this
		// one's, wrote it.
		if reserved {
			if rec, _, err := a.getTopic(ctx, c, t.Name); err != nil || rec.OwnerID != t.OwnerID {
				if err := doAll(ctx, c, "unreserve owned topic", valkey.Commands{
					c.B().Srem().Key(ownedKey(t.OwnerID)).Member(t.Name).Build(),
					c.B().Zrem().Key(pendingKey(t.OwnerID)).Member(t.Name).Build(),
				}); err != nil {
					return err
				}
			}
		}
		if n == 2 {
			return fmt.Errorf("topic %q: %w", t.Name, errInUse)
		}
		return fmt.Errorf("topic %q: %w", t.Name, messages.ErrConflict)
	}
	// A crash from here leaves an owned topic missing from listings until
	// it is updated. The owner's index is added to again: OwnedTopics may
	// have taken the reservation out as stale before the record was written.
	index := append(valkey.Commands{c.B().Sadd().Key(topicIndexKey).Member(t.Name).Build()}, reindex(c, t.Name, nil, &t)...)
	return doAll(ctx, c, "index topic", index)
}

// doAll sends cmds in one pipeline (valkey-go sends a cluster's to their
// masters) and returns the first error, wrapped as op's.
func doAll(ctx context.Context, c valkey.Client, op string, cmds valkey.Commands) error {
	for _, res := range c.DoMulti(ctx, cmds...) {
		if err := res.Error(); err != nil {
			return unavailable(op, err)
		}
	}
	return nil
}

// ownedIndexedKey and grantsIndexedKey mark a Valkey whose owner index
// (ownedKey), and grantee and public indexes (grantedKey, publicIndexKey),
// hold every owned topic: one written by a relay from before an index
// existed is indexed once, by the first relay that needs the indexes.
const (
	ownedIndexedKey  = "auth:{owned}:indexed"
	grantsIndexedKey = "auth:{granted}:indexed"
)

// indexedClient is client for the calls that read or keep the indexes:
// they are built first (ensureIndexes, under its own deadline).
func (a *ValkeyAuthStore) indexedClient(ctx context.Context) (valkey.Client, context.Context, context.CancelFunc, error) {
	if err := a.ensureIndexes(ctx); err != nil {
		return nil, nil, nil, err
	}
	return a.client(ctx)
}

// ensureIndexes builds the indexes from the topic records once per Valkey
// (marked by ownedIndexedKey and grantsIndexedKey), so that topics created
// by a relay from before them count against their owner's bound and show
// in /auth/me and in listings. Relays doing it at once add the same
// members.
//
// It runs before the caller's call takes its store timeout: the first
// index of a large Valkey (100,000 topics) reads every record once, under
// a deadline of its own (30 s), and the call then gets its whole timeout.
func (a *ValkeyAuthStore) ensureIndexes(ctx context.Context) error {
	if a.indexed.Load() {
		return nil
	}
	c, cctx, cancel, err := a.client(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	// Two commands, not one EXISTS of both keys: they are in different
	// slots of a cluster.
	marks := c.DoMulti(cctx, c.B().Exists().Key(ownedIndexedKey).Build(), c.B().Exists().Key(grantsIndexedKey).Build())
	var missing []string
	for i, key := range []string{ownedIndexedKey, grantsIndexedKey} {
		n, err := marks[i].AsInt64()
		if err != nil {
			return unavailable("indexes", err)
		}
		if n == 0 {
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		all, err := a.topics(ctx, c)
		if err != nil {
			return err
		}
		var cmds valkey.Commands
		for _, t := range all {
			for k := range indexKeys(&t) {
				owner := k == ownedKey(t.OwnerID)
				if owner && slices.Contains(missing, ownedIndexedKey) || !owner && slices.Contains(missing, grantsIndexedKey) {
					cmds = append(cmds, c.B().Sadd().Key(k).Member(t.Name).Build())
				}
			}
		}
		for _, key := range missing {
			cmds = append(cmds, c.B().Set().Key(key).Value("1").Build())
		}
		if err := doAll(ctx, c, "indexes", cmds); err != nil {
			return err
		}
		a.s.log.Info("valkey: indexed owned topics", "topics", len(all), "indexes", missing)
	}
	a.indexed.Store(true)
	return nil
}

// OwnedTopics returns the names of the topics owner holds, sorted (its own
// index: one read, however many topics others own).
func (a *ValkeyAuthStore) OwnedTopics(ctx context.Context, owner string) ([]string, error) {
	if owner == "" {
		return []string{}, nil
	}
	c, ctx, cancel, err := a.indexedClient(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	names, err := c.Do(ctx, c.B().Smembers().Key(ownedKey(owner)).Build()).AsStrSlice()
	if err != nil {
		return nil, unavailable("list owned topics", err)
	}
	// The index is kept beside the records, not with them (another slot),
	// so it may name a topic deleted or re-created meanwhile (by a relay
	// of an earlier version, or between a delete's calls): each name is
	// checked against its record, and a stale one leaves the index, unless
	// a create reserved it within pendingMs (its record may not be written
	// yet).
	var live, stale []string
	err = getRecords(ctx, c, names, func(name, text string, found bool) error {
		var t TopicRecord
		if found && json.Unmarshal([]byte(text), &t) == nil && t.OwnerID == owner {
			live = append(live, name)
		} else {
			stale = append(stale, name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(stale) > 0 {
		if err := unindexStaleScript.Exec(ctx, c, []string{ownedKey(owner), pendingKey(owner)}, stale).Error(); err != nil {
			return nil, unavailable("unindex owned topics", err)
		}
	}
	sort.Strings(live)
	if live == nil {
		live = []string{}
	}
	return live, nil
}

// unindexDeleted takes out of owner's index the names that have no record
// (and no create in flight: unindexStaleScript), reading only whether each
// record exists. OwnedTopics also takes out those owned by another now.
func (a *ValkeyAuthStore) unindexDeleted(ctx context.Context, c valkey.Client, owner string) error {
	names, err := c.Do(ctx, c.B().Smembers().Key(ownedKey(owner)).Build()).AsStrSlice()
	if err != nil {
		return unavailable("list owned topics", err)
	}
	var gone []string
	err = eachName(ctx, c, names, func(n string) valkey.Completed { return c.B().Exists().Key(topicOwnerKey(n)).Build() },
		func(name string, res valkey.ValkeyResult) error {
			n, err := res.AsInt64()
			if err != nil {
				return unavailable("get topic", err)
			}
			if n == 0 {
				gone = append(gone, name)
			}
			return nil
		})
	if err != nil {
		return err
	}
	if len(gone) == 0 {
		return nil
	}
	if err := unindexStaleScript.Exec(ctx, c, []string{ownedKey(owner), pendingKey(owner)}, gone).Error(); err != nil {
		return unavailable("unindex owned topics", err)
	}
	return nil
}

// VisibleTopics returns, by name, the records of the topics user owns, is
// granted or that are public: what user's listing may show, read through
// the indexes, not every record. The indexes are kept beside the records
// (other slots), so some names may no longer be owned, granted or public:
// the caller checks each record against the user's rights. A name whose
// record is gone leaves the grantee and public indexes (the owner's is
// OwnedTopics' to mend).
func (a *ValkeyAuthStore) VisibleTopics(ctx context.Context, user string) ([]TopicRecord, error) {
	c, ctx, cancel, err := a.indexedClient(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	keys := []string{ownedKey(user), grantedKey(user), publicIndexKey}
	cmds := make(valkey.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = c.B().Smembers().Key(k).Build()
	}
	seen := map[string]struct{}{}
	var names []string
	for _, res := range c.DoMulti(ctx, cmds...) {
		part, err := res.AsStrSlice()
		if err != nil {
			return nil, unavailable("list visible topics", err)
		}
		for _, name := range part {
			if _, ok := seen[name]; !ok {
				seen[name] = struct{}{}
				names = append(names, name)
			}
		}
	}
	out, gone, err := readTopics(ctx, c, names)
	if err != nil {
		return nil, err
	}
	if len(gone) > 0 {
		err := doAll(ctx, c, "unindex deleted topics", valkey.Commands{
			c.B().Srem().Key(grantedKey(user)).Member(gone...).Build(),
			c.B().Srem().Key(publicIndexKey).Member(gone...).Build(),
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Topic returns the record of topic name, or messages.ErrNotFound.
func (a *ValkeyAuthStore) Topic(ctx context.Context, name string) (TopicRecord, error) {
	c, ctx, cancel, err := a.client(ctx)
	if err != nil {
		return TopicRecord{}, err
	}
	defer cancel()
	rec, _, err := a.getTopic(ctx, c, name)
	return rec, err
}

func (a *ValkeyAuthStore) getTopic(ctx context.Context, c valkey.Client, name string) (TopicRecord, string, error) {
	text, err := c.Do(ctx, c.B().Get().Key(topicOwnerKey(name)).Build()).ToString()
	if valkey.IsValkeyNil(err) {
		return TopicRecord{}, "", fmt.Errorf("topic %q: %w", name, messages.ErrNotFound)
	}
	if err != nil {
		return TopicRecord{}, "", unavailable("get topic", err)
	}
	var t TopicRecord
	if err := json.Unmarshal([]byte(text), &t); err != nil {
		return TopicRecord{}, "", fmt.Errorf("valkey: topic %q: decode: %w", name, err)
	}
	return t, text, nil
}

// casScript: KEYS[1]; replace ARGV[1] by ARGV[2] only if it is still there.
var casScript = valkey.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// UpdateTopic applies fn to the topic's record and stores the result with a
// compare-and-set, retrying a few times when another writer got in between.
func (a *ValkeyAuthStore) UpdateTopic(ctx context.Context, name string, fn func(*TopicRecord) error) (TopicRecord, error) {
	c, ctx, cancel, err := a.client(ctx)
	if err != nil {
		return TopicRecord{}, err
	}
	defer cancel()
	for range 8 {
		was, old, err := a.getTopic(ctx, c, name)
		if err != nil {
			return TopicRecord{}, err
		}
		t := cloneTopic(was)
		if err := fn(&t); err != nil {
			return TopicRecord{}, err
		}
		b, _ := json.Marshal(t)
		n, err := casScript.Exec(ctx, c, []string{topicOwnerKey(name)}, []string{old, string(b)}).AsInt64()
		if err != nil {
			return TopicRecord{}, unavailable("update topic", err)
		}
		if n == 1 {
			// Two changes of one topic's grant to one user at once may
			// leave its index entry as the first had it: a name the
			// record no longer grants is checked away by readers; one it
			// grants but the index lacks is missing from that user's
			// listing until the grant is made again.
			return t, doAll(ctx, c, "index topic", reindex(c, name, &was, &t))
		}
	}
	return TopicRecord{}, fmt.Errorf("valkey: update topic %q: %w: too much contention", name, messages.ErrUnavailable)
}

// deleteTopicScript removes the owner record and, when there was one, the
// message stream (same slot): a topic nobody owns keeps its messages, as in
// the memory store. Returns the record it removed, or nil when the topic
// was not owned.
var deleteTopicScript = valkey.NewLuaScript(`
local rec = redis.call('GET', KEYS[1])
if rec then redis.call('DEL', KEYS[1], KEYS[2]) end
return rec
`)

// DeleteTopic removes the topic's record and its stored messages.
func (a *ValkeyAuthStore) DeleteTopic(ctx context.Context, name string) error {
	c, ctx, cancel, err := a.client(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	text, err := deleteTopicScript.Exec(ctx, c, []string{topicOwnerKey(name), streamKey(name)}, nil).ToString()
	owned := err == nil
	if err != nil && !valkey.IsValkeyNil(err) {
		return unavailable("delete topic", err)
	}
	unindex := valkey.Commands{c.B().Srem().Key(topicIndexKey).Member(name).Build()}
	var t TopicRecord
	if owned && json.Unmarshal([]byte(text), &t) == nil {
		unindex = append(unindex, reindex(c, name, &t, nil)...)
	}
	if err := doAll(ctx, c, "unindex topic", unindex); err != nil {
		return err
	}
	if !owned {
		return fmt.Errorf("topic %q: %w", name, messages.ErrNotFound)
	}
	return nil
}

// reindex returns the commands that move name from the index sets of old
// to those of nw (indexChange).
func reindex(c valkey.Client, name string, old, nw *TopicRecord) valkey.Commands {
	add, remove := indexChange(old, nw)
	cmds := make(valkey.Commands, 0, len(add)+len(remove))
	for _, k := range add {
		cmds = append(cmds, c.B().Sadd().Key(k).Member(name).Build())
	}
	for _, k := range remove {
		cmds = append(cmds, c.B().Srem().Key(k).Member(name).Build())
	}
	return cmds
}

// Topics returns every owned topic, by name.
func (a *ValkeyAuthStore) Topics(ctx context.Context) ([]TopicRecord, error) {
	c, ctx, cancel, err := a.client(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	return a.topics(ctx, c)
}

// topics is Topics on c, bounded by ctx alone.
func (a *ValkeyAuthStore) topics(ctx context.Context, c valkey.Client) ([]TopicRecord, error) {
	names, err := c.Do(ctx, c.B().Smembers().Key(topicIndexKey).Build()).AsStrSlice()
	if err != nil {
		return nil, unavailable("list topics", err)
	}
	out, _, err := readTopics(ctx, c, names) // a name gone was deleted since the index was read
	return out, err
}

// readTopics returns the records of names, sorted by name, and the names
// that have none.
func readTopics(ctx context.Context, c valkey.Client, names []string) (out []TopicRecord, gone []string, err error) {
	sort.Strings(names)
	out = make([]TopicRecord, 0, len(names))
	err = getRecords(ctx, c, names, func(name, text string, found bool) error {
		if !found {
			gone = append(gone, name)
			return nil
		}
		var t TopicRecord
		if err := json.Unmarshal([]byte(text), &t); err != nil {
			return fmt.Errorf("valkey: topic %q: decode: %w", name, err)
		}
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, gone, nil
}

// getRecords reads the owner records of names, in order, and hands each to
// fn (found false: none). fn's error ends the read.
func getRecords(ctx context.Context, c valkey.Client, names []string, fn func(name, text string, found bool) error) error {
	return eachName(ctx, c, names, func(n string) valkey.Completed { return c.B().Get().Key(topicOwnerKey(n)).Build() },
		func(name string, res valkey.ValkeyResult) error {
			text, err := res.ToString()
			if err != nil && !valkey.IsValkeyNil(err) {
				return unavailable("get topic", err)
			}
			return fn(name, text, err == nil)
		})
}

// eachName sends cmd(name) for every name and hands each reply to fn, in
// order: one pipeline per topicsPerPipeline names (valkey-go sends a
// cluster's to their masters in parallel), not a round trip per name
// (30,000 topics took 1.85 s). fn's error ends it.
func eachName(ctx context.Context, c valkey.Client, names []string, cmd func(string) valkey.Completed, fn func(string, valkey.ValkeyResult) error) error {
	for start := 0; start < len(names); start += topicsPerPipeline {
		part := names[start:min(start+topicsPerPipeline, len(names))]
		cmds := make(valkey.Commands, len(part))
		for i, n := range part {
			cmds[i] = cmd(n)
		}
		for i, res := range c.DoMulti(ctx, cmds...) {
			if err := fn(part[i], res); err != nil {
				return err
			}
		}
	}
	return nil
}

// topicsPerPipeline bounds one DoMulti of eachName.
const topicsPerPipeline = 1000
