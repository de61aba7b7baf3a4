package persistence

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/pulsar-relay/relay/messages"
)

// ValkeyConfig configures a ValkeyStore. The zero value of each optional
// field means its default.
type ValkeyConfig struct {
	// Addrs are the "host:port" addresses of Valkey (RELAY_VALKEY_ADDR).
	// Required. One address of a standalone server gives a standalone
	// client; several addresses (or one of a cluster node) give a cluster
	// client.
	Addrs []string
	// Username and Password authenticate (AUTH / HELLO AUTH); empty means
	// none (RELAY_VALKEY_USERNAME, RELAY_VALKEY_PASSWORD).
	Username string
	Password string
	// DB is the database to SELECT (RELAY_VALKEY_DB); default 0.
	DB int
	// Limits bound what is retained per topic; the zero value keeps
	// everything.
	Limits Limits
	// WaitReplicas (RELAY_VALKEY_WAIT_REPLICAS), when > 0, makes Append
	// acknowledge a batch only after WAIT saw that many replicas take it,
	// so an acknowledged message survives a master failover; default 0
	// (acknowledge once the master has it). It costs a replication round
	// trip per batch and a dedicated connection per append in flight; a
	// batch the replicas did not confirm within 3/4 of Timeout fails with
	// messages.ErrUnavailable although the master stored it (a retry with
	// the same Idempotency-Key stores nothing new and is acknowledged, with
	// the first id, once the replicas confirm). The notice goes out with
	// the script, before WAIT: other relays may deliver such a message,
	// which a failover right then can still lose.
	WaitReplicas int
	// Timeout bounds every operation, connecting included; default 2s. A
	// stalled Valkey makes an operation fail with messages.ErrUnavailable
	// after at most Timeout.
	Timeout time.Duration
}

// DefaultValkeyTimeout is ValkeyConfig.Timeout's default.
const DefaultValkeyTimeout = 2 * time.Second

// Background reconnect backoff while Valkey is unreachable (the store's
// connect at start-up, the feed's setup and its links). At most a second:
// the feed waits on the store's connect and its links on the feed, so
// their waits add up (with 5 s, /ready came 2.4-4.4 s after Valkey did,
// the review saw 6 s, and other relays' appends arrived only through the
// tip check meanwhile); a connect attempt a second costs nothing.
const (
	connectBackoffMin = 100 * time.Millisecond
	connectBackoffMax = time.Second
)

// maxScanCount caps the COUNT of one follow-up read. Range and RevRange read
// on until the page is full, the stream ends, or they have looked at
// scanBudget(limit) entries; then they return the short page with Page.Next
// set, so a long run of expired entries costs several bounded calls instead
// of one unbounded one.
const maxScanCount = 1000

// ValkeyStore keeps each topic in a Valkey stream (Valkey or Redis >= 7).
//
// Layout: one stream per topic at key "topic:{<topic>}:stream" (the braces
// are a cluster hash tag). Each entry's id is the message id (XADD "*": the
// server's clock, strictly increasing per stream even if that clock steps
// back). Fields:
//
//	payload     the JSON payload, as given
//	timestamp   RFC 3339 UTC with microseconds and "Z"
//	            (messages.TimestampLayout, e.g. 2026-11-27T01:17:27.656581Z);
//	            finer precision is dropped
//	metadata    JSON object of strings; absent when empty
//	expires_at  same format as timestamp; absent when the message has no ttl
//
// Beside it, under the same hash tag (so a cluster keeps a topic on one
// shard and one script call touches only that shard):
//
//	topic:{<topic>}:meta         hash: epoch, origin, last (the incarnation)
//	topic:{<topic>}:idem:<sha>   an Idempotency-Key's record, PX the window
//	topic:{<topic>}:live         the pub/sub channel of append notices (db<N>:topic:{<topic>}:live on database N > 0)
//
// Cluster: one address of a cluster node, or several seeds, give valkey-go's
// cluster client (it detects the mode). Scripts touch one topic's keys only;
// Tips pipelines across slots; notices use sharded pub/sub (SPUBLISH,
// SSUBSCRIBE) in every mode.
//
// Expiry: with a retention, appends keep the stream's and its meta hash's
// expiry at least the retention ahead (see streamExpiry), so a topic nobody
// writes to disappears (no stream: a resume point on it reports Truncated).
//
// Trimming happens on every append, in the same script as the XADDs:
// "XTRIM MAXLEN ~ Limits.MaxMessages" and "XTRIM MINID ~ <now-Retention ms>".
// The trims are approximate (whole radix-tree nodes), so a topic may hold up
// to one node (stream-node-max-entries, default 100) more than the cap, and
// out-of-retention entries linger until their node goes; reads filter them
// out by their timestamp field. After a trim that removed something, the
// script records the id just below the oldest remaining entry as the
// stream's max-deleted-entry-id (XSETID ... MAXDELETEDID), which is what
// Range's Truncated is computed from (XTRIM alone does not maintain it).
//
// Connection: if Valkey is unreachable when the store is created, the store
// still comes up and keeps connecting in the background (with backoff,
// logging at warn); meanwhile every operation fails with
// messages.ErrUnavailable and Ping reports why. Once connected, valkey-go
// re-dials broken connections by itself, so a Valkey restart needs no new
// store.
//
// Concurrency: all methods are safe for concurrent use.
type ValkeyStore struct {
	cfg        ValkeyConfig
	log        *slog.Logger
	timeout    time.Duration
	chanPrefix string // liveChannel's, from cfg.DB

	client atomic.Pointer[valkeyClient] // nil until connected

	mu         sync.Mutex
	closed     bool
	connectErr error // why the background connect has not succeeded yet

	stop chan struct{} // closed by Close
	wg   sync.WaitGroup

	// Group commit across topics (valkey_commit.go), under mu.
	queue  []*appendCall
	rounds int // commitRounds goroutines running

	trimWarned atomic.Bool // a trim failure has been logged
	// clockOffset is the server's clock less this process's, in ms: the
	// largest measured in the last minute (noteClock), once clockKnown.
	clockOffset atomic.Int64
	clockKnown  atomic.Bool
	clockMu     sync.Mutex
	clockMin    time.Time // when the current minute's bucket began
	clockCur    clockPeak // the largest offset measured in the current minute
	clockPrev   clockPeak // and in the one before
}

var _ Store = (*ValkeyStore)(nil)

type valkeyClient struct{ c valkey.Client }

// NewValkeyStore connects to Valkey and returns the store.
//
// An unreachable Valkey is not an error: the store is returned and connects
// in the background (see ValkeyStore). Errors are returned for a bad
// configuration (no address) and for credentials or a database the server
// rejects (WRONGPASS, NOAUTH, NOPERM, DB index out of range), so that a
// misconfigured relay stops at start-up with a clear message. An already
// cancelled ctx is returned as an error; the connect attempt itself is bounded
// by cfg.Timeout (valkey-go takes no context for it). logger (nil: discard)
// receives connection events.
func NewValkeyStore(ctx context.Context, cfg ValkeyConfig, logger *slog.Logger) (*ValkeyStore, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("valkey: no address configured")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultValkeyTimeout
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("valkey: connect %s: %w", strings.Join(cfg.Addrs, ","), err)
	}
	s := &ValkeyStore{cfg: cfg, log: logger, timeout: cfg.Timeout, stop: make(chan struct{}), chanPrefix: channelPrefix(cfg.DB)}
	opt := s.clientOption()
	c, err := valkey.NewClient(opt)
	switch {
	case err == nil:
		s.client.Store(&valkeyClient{c})
		s.log.Info("valkey: connected", "addrs", cfg.Addrs)
	case isConfigError(err):
		return nil, fmt.Errorf("valkey: connect %s: %w", strings.Join(cfg.Addrs, ","), err)
	default:
		s.connectErr = err
		s.log.Warn("valkey: unreachable; connecting in the background",
			"addrs", cfg.Addrs, "err", err)
		s.wg.Add(1)
		go s.connectLoop(opt)
	}
	return s, nil
}

func (s *ValkeyStore) clientOption() valkey.ClientOption {
	opt := valkey.ClientOption{
		InitAddress:  append([]string(nil), s.cfg.Addrs...),
		Username:     s.cfg.Username,
		Password:     s.cfg.Password,
		SelectDB:     s.cfg.DB,
		ClientName:   "pulsar-relay",
		DisableCache: true, // no client-side caching: streams are read once
		// Keep a reader on every connection even when commands are not
		// concurrent, so a connection the server closed (restart, crash) is
		// noticed and replaced at once. Otherwise the first write on it after
		// Valkey comes back fails with EOF, and writes are not retried.
		AlwaysPipelining: true,
		// A stalled server closes the connection after Timeout, so the
		// next command dials afresh instead of queueing behind it.
		ConnWriteTimeout: s.timeout,
	}
	opt.Dialer.Timeout = s.timeout
	return opt
}

// connectLoop retries NewClient with exponential backoff until it succeeds
// or the store is closed.
func (s *ValkeyStore) connectLoop(opt valkey.ClientOption) {
	defer s.wg.Done()
	delay := connectBackoffMin
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-timer.C:
		}
		c, err := valkey.NewClient(opt)
		if err == nil {
			s.mu.Lock()
			closed := s.closed
			if !closed {
				s.client.Store(&valkeyClient{c})
				s.connectErr = nil
			}
			s.mu.Unlock()
			if closed {
				c.Close()
				return
			}
			s.log.Info("valkey: connected", "addrs", s.cfg.Addrs)
			return
		}
		s.mu.Lock()
		s.connectErr = err
		s.mu.Unlock()
		level := slog.LevelWarn
		if isConfigError(err) {
			level = slog.LevelError // keeps retrying: the server's config may be fixed
		}
		s.log.Log(context.Background(), level, "valkey: connect failed; retrying",
			"addrs", s.cfg.Addrs, "err", err, "retry_in", delay)
		delay = min(delay*2, connectBackoffMax)
		timer.Reset(delay)
	}
}

// isConfigError reports whether a connect error is the server refusing our
// credentials or database rather than being unreachable.
func isConfigError(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	if !ok {
		return false
	}
	msg := verr.Error()
	for _, p := range []string{"WRONGPASS", "NOAUTH", "NOPERM", "ERR AUTH", "ERR invalid password"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return strings.Contains(msg, "DB index is out of range")
}

// conn returns the client, or an error wrapping messages.ErrUnavailable
// while the store is not connected or is closed.
func (s *ValkeyStore) conn() (valkey.Client, error) {
	if vc := s.client.Load(); vc != nil {
		return vc.c, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("%w: store closed", messages.ErrUnavailable)
	}
	return nil, fmt.Errorf("%w: not connected to %s: %v",
		messages.ErrUnavailable, strings.Join(s.cfg.Addrs, ","), s.connectErr)
}

// streamKey is the key of topic's stream. Topics are validated to
// [A-Za-z0-9._-] before they reach a store, so no brace can break the hash tag.
func streamKey(topic string) string { return "topic:{" + topic + "}:stream" }

// streamExpiry returns how long a stream (and its meta hash) lives after an
// append that sets its expiry, and the remaining time under which an append
// sets it again. The expiry is the retention, after which every message in
// the stream is out of retention anyway, plus a margin (the retention again,
// at most a minute) for the clock difference between the relay (timestamps)
// and Valkey; it is refreshed once half the margin has passed, so after any
// append the stream lives at least retention + margin/2 (an append costs
// one PTTL instead of two PEXPIREs most of the time).
func streamExpiry(retention time.Duration) (expiry, refreshBelow time.Duration) {
	margin := min(retention, time.Minute)
	return retention + margin, retention + margin/2
}

// metaKey is the key of the hash holding topic's stream incarnation (epoch,
// origin, last).
func metaKey(topic string) string { return "topic:{" + topic + "}:meta" }

// idemKey is the key of the record of an Idempotency-Key sent to topic.
func idemKey(topic, key string) string { return "topic:{" + topic + "}:idem:" + idemHash(key) }

// appendScript adds a batch to one stream and trims it, atomically, in one
// round trip (EVALSHA; EVAL when the server's script cache is empty).
//
// Idempotency: a message with an Idempotency-Key names its record's key in
// KEYS (topic:{<t>}:idem:<sha256 hex of the key>, same hash tag as the
// stream). If that key exists, the message is not added: the script returns
// the first message's id and timestamp and whether the request hash
// matches. Otherwise, right after its XADD, the script SETs the record
// ("<id> <timestamp> <request hash>", NX, PX window). Both happen in the same
// script, so no crash can store a message without remembering its key, and
// a repeat later in the same batch sees the record.
//
// One XADD carries one trim strategy only, so the script runs plain XADDs
// and then XTRIM MAXLEN ~ and XTRIM MINID ~ once per batch, which is cheaper
// than trimming on every XADD and also tells it whether anything was
// removed. When something was, it records pred(oldest remaining id) as the
// stream's max-deleted-entry-id (XSETID MAXDELETEDID, Valkey/Redis >= 7),
// since XTRIM does not maintain it.
//
// Every call is a redis.pcall: a script that raises after an XADD has run
// is not rolled back, and its error reply would hide the ids it stored.
//
// Announce: when the batch stored anything, the script SPUBLISHes a notice
// (see Notice; JSON built here: ids, timestamps, the epoch and the topic
// never need escaping, payload and metadata are JSON already) on the topic's
// live channel topic:{<topic>}:live. It goes out in the same call as the
// XADDs, so every stored batch is announced exactly once, in stream order.
//
// Epoch: the meta hash (KEYS[2]) holds the stream's incarnation: epoch (a
// random id), origin (the first id of the incarnation) and last (the newest
// id added). When the batch creates the stream (it did not exist, whatever
// an old meta hash says), the script starts a new incarnation with ARGV[4]
// as its epoch; its first id still follows the old incarnation's last (ids
// never repeat within a topic). A stream from before epochs existed gets one
// with origin 0-0 (nothing is known to be lost).
//
// KEYS[1]: the stream; KEYS[2]: its meta hash; KEYS[3...]: idempotency
// records. ARGV[1]: MAXLEN threshold, "0" for none. ARGV[2]: MINID
// threshold, "0" for none. ARGV[3]: the idempotency window in ms. ARGV[4]:
// a fresh epoch, used if the batch starts an incarnation. ARGV[5]: the
// expiry of the stream and its meta hash in ms ("0" for none), set again
// by an append when less than ARGV[8] ms of it is left, so that a topic
// nobody writes to disappears. ARGV[6]: the topic. ARGV[7]: "1" to put the
// messages in the notice. ARGV[9]: the live channel (liveChannel: its name
// carries the database when it is not 0). ARGV[10]: the latest server time
// (ms) at which the batch may still be stored, "0" for none (see
// scriptDeadline). Then six per message: payload, timestamp,
// metadata ("" for none), expires_at ("" for none), the index in KEYS of its
// idempotency record ("0" for none), its request hash.
//
// Returns {err, warn, now, r1, r2, ...}: err is "" when every message was
// handled, else the error of the first XADD that failed, after which nothing
// more was added (or, past ARGV[10], of the batch: nothing added); warn is
// "" unless trimming or remembering a key failed (the messages are stored
// all the same); now is the server's time in ms (noteClock). ri is the new
// id of message i, or {"d"|"c", first id, first timestamp} for a repeat
// ("c": request hash differs).
var appendScript = valkey.NewLuaScript(appendLua)

const appendLua = `
local key, meta = KEYS[1], KEYS[2]
local clock = redis.call('TIME')
local vnow = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local out = {'', '', vnow}
if ARGV[10] ~= '0' and vnow > tonumber(ARGV[10]) then
  out[1] = 'late: past the relay deadline, nothing stored'
  return out
end
local fresh = redis.call('EXISTS', key) == 0
local em = redis.call('HMGET', meta, 'epoch', 'last')
local epoch = em[1]
local prev = '0-0'
if not fresh and epoch then prev = em[2] or '0-0' end
local inline = ARGV[7] == '1'
local parts = {}
local first, last
local function try(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then
    out[2] = r.err
    return nil
  end
  return r
end
for i = 11, #ARGV, 6 do
  local ik = tonumber(ARGV[i + 4])
  local prev = nil
  if ik > 0 then prev = redis.pcall('GET', KEYS[ik]) end
  if type(prev) == 'string' then
    local pid, pts, phash = string.match(prev, '^(%S+) (%S+) (.*)$')
    local kind = 'd'
    if phash ~= ARGV[i + 5] then kind = 'c' end
    out[#out + 1] = {kind, pid or '0-0', pts or ''}
  else
    local xid = '*'
    if fresh and em[2] and not first then
      -- A new incarnation after a deleted stream: its ids still follow the
      -- old one's, so a resume point from before never names a new message.
      local lms, lseq = string.match(em[2], '^(%d+)-(%d+)$')
      local t = redis.call('TIME')
      local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      if lms and now <= tonumber(lms) then xid = lms .. '-' .. (tonumber(lseq) + 1) end
    end
    -- One call per field set: no argument table to build and unpack.
    local md, ex = ARGV[i + 2], ARGV[i + 3]
    local id
    if md == '' and ex == '' then
      id = redis.pcall('XADD', key, xid, 'payload', ARGV[i], 'timestamp', ARGV[i + 1])
    elseif ex == '' then
      id = redis.pcall('XADD', key, xid, 'payload', ARGV[i], 'timestamp', ARGV[i + 1], 'metadata', md)
    elseif md == '' then
      id = redis.pcall('XADD', key, xid, 'payload', ARGV[i], 'timestamp', ARGV[i + 1], 'expires_at', ex)
    else
      id = redis.pcall('XADD', key, xid, 'payload', ARGV[i], 'timestamp', ARGV[i + 1], 'metadata', md, 'expires_at', ex)
    end
    if type(id) == 'table' and id.err then
      out[1] = id.err
      break
    end
    if ik > 0 then
      try('SET', KEYS[ik], id .. ' ' .. ARGV[i + 1] .. ' ' .. ARGV[i + 5], 'NX', 'PX', ARGV[3])
    end
    out[#out + 1] = id
    first = first or id
    last = id
    if inline then
      -- Each part lacks its closing brace: the concat below adds them, so
      -- a part without metadata or expiry is made (and hashed, as Lua does
      -- every string) once; one with them is extended once per field.
      local m = '{"id":"' .. id .. '","timestamp":"' .. ARGV[i + 1] .. '","payload":' .. ARGV[i]
      if md ~= '' then m = m .. ',"metadata":' .. md end
      if ex ~= '' then m = m .. ',"expires_at":"' .. ex .. '"' end
      parts[#parts + 1] = m
    end
  end
end
if not last then return out end
if fresh or not epoch then
  local origin = first
  if not fresh then origin = '0-0' end
  epoch = ARGV[4]
  try('DEL', meta)
  try('HSET', meta, 'epoch', epoch, 'origin', origin, 'last', last)
else
  try('HSET', meta, 'last', last)
end
if ARGV[5] ~= '0' then
  -- Refresh only when less than ARGV[8] is left: one PTTL instead of two
  -- PEXPIREs on most appends.
  local ttl = tonumber(redis.call('PTTL', meta))
  if fresh or ttl < tonumber(ARGV[8]) then
    try('PEXPIRE', key, ARGV[5])
    try('PEXPIRE', meta, ARGV[5])
  end
elseif not fresh and tonumber(redis.call('PTTL', meta)) >= 0 then
  -- Kept forever now (a policy or RELAY_RETENTION changed to 0): an
  -- expiry set under the old retention must not delete the stream later.
  try('PERSIST', key)
  try('PERSIST', meta)
end
local notice = '{"topic":"' .. ARGV[6] .. '","epoch":"' .. epoch .. '","prev":"' .. prev .. '","last":"' .. last .. '"'
if inline then
  notice = notice .. ',"messages":[' .. table.concat(parts, '},') .. '}]}'
else
  notice = notice .. '}'
end
try('SPUBLISH', ARGV[9], notice)
local trimmed = 0
if ARGV[1] ~= '0' then trimmed = trimmed + (try('XTRIM', key, 'MAXLEN', '~', ARGV[1]) or 0) end
if ARGV[2] ~= '0' then trimmed = trimmed + (try('XTRIM', key, 'MINID', '~', ARGV[2]) or 0) end
if trimmed == 0 then return out end
local md = last
local oldest = try('XRANGE', key, '-', '+', 'COUNT', 1)
if oldest and #oldest > 0 then
  local ms, seq = string.match(oldest[1][1], '^(%d+)%-(%d+)$')
  if seq ~= '0' then
    md = ms .. '-' .. string.format('%d', tonumber(seq) - 1)
  else
    md = string.format('%d', tonumber(ms) - 1) .. '-18446744073709551615'
  end
end
try('XSETID', key, last, 'MAXDELETEDID', md)
return out
`

// rangeScript reads the stream's max-deleted-entry-id, its incarnation and
// the first page of an XRANGE atomically, so no trim can fall between them.
//
// KEYS[1]: the stream; KEYS[2]: its meta hash. ARGV[1]: XRANGE start.
// ARGV[2]: COUNT. Returns {max-deleted-entry-id, entries, epoch, origin,
// exists}; {"0-0", {}, "", "0-0", 0} when there is no stream.
var rangeScript = valkey.NewLuaScriptReadOnly(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {'0-0', {}, '', '0-0', 0} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local md = '0-0'
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then
    md = info[i + 1]
    break
  end
end
local em = redis.call('HMGET', KEYS[2], 'epoch', 'origin')
return {md, redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2]), em[1] or '', em[2] or '0-0', 1}
`)

// Append implements Store. The batch goes to Valkey as one script call (one
// round trip) that adds the messages in order and trims the stream; no other
// command runs in between.
//
// Partial failure: if an XADD inside the script fails (the server refused
// it), the script stops there; batch[:n] are stored with their IDs set,
// batch[n:] are not, and err carries the server's reason. If the call itself
// fails (connection lost, Timeout passed, store not connected) n is 0 and
// nothing is acknowledged; because valkey-go does not retry the script and
// the reply was lost, the batch may nonetheless have been stored as a whole
// (never in part), so a caller that retries may store it twice. Every error
// wraps messages.ErrUnavailable.
func (s *ValkeyStore) Append(ctx context.Context, topic string, batch []messages.Message) (int, error) {
	if len(batch) == 0 {
		return 0, nil
	}
	c, err := s.conn()
	if err != nil {
		return 0, fmt.Errorf("valkey: append %q: %w", topic, err)
	}
	a, err := s.prepareAppend(ctx, topic, batch)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	d, _ := ctx.Deadline()
	s.stamp(a, d)
	var res valkey.ValkeyResult
	var waitErr error
	if s.cfg.WaitReplicas > 0 {
		res, waitErr = s.appendAndWait(ctx, c, a.keys, a.args)
	} else {
		res = appendScript.Exec(ctx, c, a.keys, a.args)
	}
	return s.finishAppend(a, res, waitErr)
}

// appendCall is one batch's append script call: its keys and arguments, and
// the batch its reply is decoded into.
type appendCall struct {
	topic      string
	batch      []messages.Message
	keys, args []string
	ctx        context.Context        // AppendAsync's: its values and cancellation
	deadline   time.Time              // AppendAsync's: bounds the batch and its round
	done       func(n int, err error) // AppendAsync's
	sent       time.Time              // when the call went out (stamp)
}

// stamp readies a's call to go out now, to be answered by deadline: the
// script stores nothing once the server's clock is past scriptDeadline.
func (s *ValkeyStore) stamp(a *appendCall, deadline time.Time) {
	a.sent = time.Now()
	a.args[9] = s.scriptDeadline(deadline)
}

// scriptDeadline is the append script's ARGV[10] for a call the relay
// gives up on at deadline: that time less a margin for the reply to come
// back, on the server's clock (the offset noteClock measured), or "0" (no
// bound) while the offset is unknown.
//
// Why: a call that times out is answered 503, yet its command still sits
// in the socket (a server stalled by SIGSTOP, a long fork, a slow disk)
// and ran when the server resumed: 503s for messages that were stored and
// delivered, up to half a minute later. Past its deadline the script now
// refuses, so a 503 means not stored, but for a reply lost within the
// margin.
func (s *ValkeyStore) scriptDeadline(deadline time.Time) string {
	if !s.clockKnown.Load() || deadline.IsZero() {
		return "0"
	}
	margin := min(s.timeout/4, 250*time.Millisecond)
	return strconv.FormatInt(deadline.Add(-margin).UnixMilli()+s.clockOffset.Load(), 10)
}

// noteClock takes the server's time now (ms) from a script reply to a
// call sent at sent and answered at recv: the offset of the server's clock
// from this process's, measured from replies that came back within 50 ms
// (their error at most half that), so that scriptDeadline is on the
// server's clock even when the hosts' clocks differ. A server always
// farther than that is never measured, and its appends are not bounded.
//
// It keeps the largest offset of the last minute: the servers of a
// cluster (or the master after a failover) may each have their own clock,
// and a larger offset only makes the deadline later (weaker), while a
// smaller one than a server's own refused its appends as late.
func (s *ValkeyStore) noteClock(now int64, sent, recv time.Time) {
	rtt := recv.Sub(sent)
	if sent.IsZero() || rtt < 0 || rtt > 50*time.Millisecond {
		return
	}
	off := now - sent.Add(rtt/2).UnixMilli()
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	// Two buckets of a minute: the offset in force is the larger of the
	// current minute's peak and the previous minute's, so a peak lapses
	// between one and two minutes after it was last measured, never to a
	// single later sample.
	if recv.Sub(s.clockMin) >= time.Minute {
		s.clockPrev, s.clockCur, s.clockMin = s.clockCur, clockPeak{}, recv
	}
	s.clockCur.note(off)
	peak := s.clockCur
	if s.clockPrev.set {
		peak.note(s.clockPrev.off)
	}
	s.clockOffset.Store(peak.off)
	s.clockKnown.Store(true)
}

// clockPeak is the largest clock offset noted, if any.
type clockPeak struct {
	off int64
	set bool
}

// note takes off into p.
func (p *clockPeak) note(off int64) {
	if !p.set || off > p.off {
		p.off, p.set = off, true
	}
}

// prepareAppend builds the append script's keys and arguments for batch
// (see appendScript), under own limits or those ctx carries (a topic's
// policy may set its own).
func (s *ValkeyStore) prepareAppend(ctx context.Context, topic string, batch []messages.Message) (*appendCall, error) {
	keys := []string{streamKey(topic), metaKey(topic)}
	args := make([]string, 0, 10+6*len(batch))
	lim := appendLimits(ctx, s.cfg.Limits)
	args = append(args, "0", "0", strconv.FormatInt(lim.idempotencyWindow().Milliseconds(), 10), newEpoch(), "0", topic, "0", "0", s.liveChannel(topic), "0")
	if lim.MaxMessages > 0 {
		args[0] = strconv.Itoa(lim.MaxMessages)
	}
	if r := lim.Retention; r > 0 {
		args[1] = strconv.FormatInt(time.Now().Add(-r).UnixMilli(), 10)
		expiry, refresh := streamExpiry(r)
		args[4] = strconv.FormatInt(expiry.Milliseconds(), 10)
		args[7] = strconv.FormatInt(refresh.Milliseconds(), 10)
	}
	inline := 0
	for i := range batch {
		inline += len(batch[i].Payload)
	}
	for i := range batch {
		m := &batch[i]
		var md, exp string
		if len(m.Metadata) > 0 {
			b, err := json.Marshal(m.Metadata)
			if err != nil {
				return nil, fmt.Errorf("valkey: append %q: metadata: %w", topic, err)
			}
			md = valkey.BinaryString(b)
		}
		if !m.ExpiresAt.IsZero() {
			exp = messages.FormatTime(m.ExpiresAt)
		}
		ik := "0"
		if m.IdempotencyKey != "" {
			keys = append(keys, idemKey(topic, m.IdempotencyKey))
			ik = strconv.Itoa(len(keys))
		}
		// The payload is immutable once handed to the store, so it is
		// passed without a copy.
		inline += len(md)
		args = append(args, valkey.BinaryString(m.Payload), messages.FormatTime(m.Timestamp), md, exp, ik, m.RequestHash)
	}
	if inline <= NoticeInlineMax {
		args[6] = "1"
	}
	return &appendCall{topic: topic, batch: batch, keys: keys, args: args}, nil
}

// finishAppend decodes the append script's reply res into a's batch and
// returns what Append returns. waitErr is appendAndWait's: the batch was
// stored on the master but not confirmed by enough replicas.
func (s *ValkeyStore) finishAppend(a *appendCall, res valkey.ValkeyResult, waitErr error) (int, error) {
	topic, batch := a.topic, a.batch
	reply, err := res.ToArray()
	if err != nil {
		return 0, fmt.Errorf("valkey: append %q: %w: %w", topic, messages.ErrUnavailable, err)
	}
	if len(reply) >= 3 {
		if now, err := reply[2].AsInt64(); err == nil {
			s.noteClock(now, a.sent, time.Now())
		}
	}
	if waitErr != nil {
		// Stored on the master, not confirmed by enough replicas: not
		// acknowledged.
		return 0, fmt.Errorf("valkey: append %q: %w: %w", topic, messages.ErrUnavailable, waitErr)
	}
	if len(reply) < 3 || len(reply) > len(batch)+3 {
		return 0, fmt.Errorf("valkey: append %q: %w: unexpected reply of %d elements", topic, messages.ErrUnavailable, len(reply))
	}
	if warn, _ := reply[1].ToString(); warn != "" && s.trimWarned.CompareAndSwap(false, true) {
		s.log.Warn("valkey: trimming or remembering an idempotency key failed; messages are stored but limits are not enforced (logged once)",
			"topic", topic, "err", warn)
	}
	n := 0
	for _, r := range reply[3:] {
		if !decodeAppended(&batch[n], topic, r) {
			break
		}
		n++
	}
	if n != len(reply)-3 {
		// The server stored reply[2:] but we cannot read an id: report the
		// ones we could and fail the rest, so that n stays honest about IDs.
		return n, fmt.Errorf("valkey: append %q: %w: unreadable id in reply", topic, messages.ErrUnavailable)
	}
	if errMsg, _ := reply[0].ToString(); errMsg != "" {
		return n, fmt.Errorf("valkey: append %q: %w: message %d of %d: %s", topic, messages.ErrUnavailable, n+1, len(batch), errMsg)
	}
	if n < len(batch) {
		return n, fmt.Errorf("valkey: append %q: %w: %d of %d stored", topic, messages.ErrUnavailable, n, len(batch))
	}
	return n, nil
}

// appendSHA is the SHA-1 of appendLua, for EVALSHA on a dedicated
// connection.
var appendSHA = func() string {
	sum := sha1.Sum([]byte(appendLua))
	return hex.EncodeToString(sum[:])
}()

// appendAndWait runs the append script, then WAIT WaitReplicas, on one
// dedicated connection (WAIT counts the writes of its own connection; in a
// cluster the script's keys bind the connection to the topic's master). It
// returns the script's result and, when the script ran, an error if fewer
// replicas than WaitReplicas acknowledged within the timeout.
func (s *ValkeyStore) appendAndWait(ctx context.Context, c valkey.Client, keys, args []string) (valkey.ValkeyResult, error) {
	dc, release := c.Dedicate()
	defer release()
	res := dc.Do(ctx, dc.B().Evalsha().Sha1(appendSHA).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build())
	if verr, ok := valkey.IsValkeyErr(res.Error()); ok && verr.IsNoScript() {
		res = dc.Do(ctx, dc.B().Eval().Script(appendLua).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build())
	}
	if res.Error() != nil {
		return res, nil
	}
	waitMs := max(s.timeout.Milliseconds()*3/4, 1) // leave time for the reply
	acked, err := dc.Do(ctx, dc.B().Wait().Numreplicas(int64(s.cfg.WaitReplicas)).Timeout(waitMs).Build()).AsInt64()
	if err != nil {
		return res, fmt.Errorf("WAIT %d: %w", s.cfg.WaitReplicas, err)
	}
	if acked < int64(s.cfg.WaitReplicas) {
		return res, fmt.Errorf("WAIT %d: only %d replicas acknowledged within %d ms", s.cfg.WaitReplicas, acked, waitMs)
	}
	return res, nil
}

// decodeAppended sets m from its element of the append script's reply: the
// new id, or {"d"|"c", first id, first timestamp} for a repeat. It reports
// false when the element cannot be read.
func decodeAppended(m *messages.Message, topic string, r valkey.ValkeyMessage) bool {
	if text, err := r.ToString(); err == nil {
		id, err := messages.ParseID(text)
		if err != nil {
			return false
		}
		m.ID, m.Topic = id, topic
		return true
	}
	parts, err := r.ToArray()
	if err != nil || len(parts) != 3 {
		return false
	}
	kind, _ := parts[0].ToString()
	idText, _ := parts[1].ToString()
	tsText, _ := parts[2].ToString()
	id, err := messages.ParseID(idText)
	if err != nil {
		return false
	}
	ts, err := time.Parse(time.RFC3339Nano, tsText)
	if err != nil {
		return false
	}
	m.ID, m.Timestamp, m.Topic = id, ts, topic
	if kind == "c" {
		m.Conflict = true
	} else {
		m.Duplicate = true
	}
	return true
}

// Range implements Store.
//
// Truncated is true when after < the stream's max-deleted-entry-id (which
// the append script sets to just below the oldest entry left after a trim),
// when an entry after `after` was skipped for being older than the
// retention, and when a non-zero after predates the incarnation (before its
// origin, or no stream). A point at or after the oldest retained entry is
// therefore never truncated; any point before it is (including the last
// trimmed id itself, which the memory store does not count). Errors wrap
// messages.ErrUnavailable, except for entries that cannot be decoded.
func (s *ValkeyStore) Range(ctx context.Context, topic string, after messages.ID, limit int) (Page, error) {
	if limit <= 0 {
		return Page{}, nil
	}
	c, err := s.conn()
	if err != nil {
		return Page{}, fmt.Errorf("valkey: range %q: %w", topic, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	key := streamKey(topic)
	start := "-"
	if !after.IsZero() {
		start = "(" + after.String()
	}
	reply, err := rangeScript.Exec(ctx, c, []string{key, metaKey(topic)}, []string{start, strconv.Itoa(limit)}).ToArray()
	if err != nil {
		return Page{}, fmt.Errorf("valkey: range %q: %w: %w", topic, messages.ErrUnavailable, err)
	}
	if len(reply) != 5 {
		return Page{}, fmt.Errorf("valkey: range %q: unexpected reply of %d elements", topic, len(reply))
	}
	var page Page
	if mdText, err := reply[0].ToString(); err == nil {
		if md, err := messages.ParseID(mdText); err == nil {
			page.Truncated = after.Less(md)
		}
	}
	page.Epoch, _ = reply[2].ToString()
	if exists, _ := reply[4].AsInt64(); exists == 0 {
		page.Truncated = !after.IsZero()
		return page, nil
	}
	if originText, err := reply[3].ToString(); err == nil && !after.IsZero() {
		if origin, err := messages.ParseID(originText); err == nil && after.Less(origin) {
			page.Truncated = true
		}
	}
	f := s.newFilter()
	entries := reply[1]
	count, budget := limit, scanBudget(limit)
	for {
		got, last, read, err := f.decode(topic, entries, limit-len(page.Messages), page.Messages)
		if err != nil {
			return Page{}, fmt.Errorf("valkey: range %q: %w", topic, err)
		}
		page.Messages = got
		budget -= read
		if len(page.Messages) >= limit || read < count {
			break
		}
		if budget <= 0 {
			// Filtering skipped a long run: hand back a cursor.
			page.Next, _ = messages.ParseID(last)
			break
		}
		// Filtering left the page short and the stream has more: read on.
		count = min(count*2, maxScanCount, budget)
		res := c.Do(ctx, c.B().Xrange().Key(key).Start("("+last).End("+").Count(int64(count)).Build())
		if entries, err = res.ToMessage(); err != nil {
			return Page{}, fmt.Errorf("valkey: range %q: %w: %w", topic, messages.ErrUnavailable, err)
		}
	}
	page.Truncated = page.Truncated || f.outOfRetention
	return page, nil
}

// RevRange implements Store. Errors wrap messages.ErrUnavailable, except for
// entries that cannot be decoded.
func (s *ValkeyStore) RevRange(ctx context.Context, topic string, before messages.ID, limit int) (Page, error) {
	if limit <= 0 {
		return Page{}, nil
	}
	c, err := s.conn()
	if err != nil {
		return Page{}, fmt.Errorf("valkey: revrange %q: %w", topic, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	key := streamKey(topic)
	end := "+"
	if !before.IsZero() {
		end = "(" + before.String()
	}
	f := s.newFilter()
	var page Page
	count, budget := limit, scanBudget(limit)
	for first := true; ; first = false {
		xrev := c.B().Xrevrange().Key(key).End(end).Start("-").Count(int64(count)).Build()
		var res valkey.ValkeyResult
		if first {
			rs := c.DoMulti(ctx, c.B().Hget().Key(metaKey(topic)).Field("epoch").Build(), xrev)
			if err := rs[0].Error(); err != nil && !valkey.IsValkeyNil(err) {
				return Page{}, fmt.Errorf("valkey: revrange %q: %w: %w", topic, messages.ErrUnavailable, err)
			}
			page.Epoch, _ = rs[0].ToString()
			res = rs[1]
		} else {
			res = c.Do(ctx, xrev)
		}
		entries, err := res.ToMessage()
		if err != nil {
			return Page{}, fmt.Errorf("valkey: revrange %q: %w: %w", topic, messages.ErrUnavailable, err)
		}
		var last string
		var read int
		if page.Messages, last, read, err = f.decode(topic, entries, limit-len(page.Messages), page.Messages); err != nil {
			return Page{}, fmt.Errorf("valkey: revrange %q: %w", topic, err)
		}
		budget -= read
		// Entries past the retention are the oldest; older ones would be
		// skipped too, so stop reading once one was seen.
		if len(page.Messages) >= limit || read < count || f.outOfRetention {
			break
		}
		if budget <= 0 {
			page.Next, _ = messages.ParseID(last)
			break
		}
		end = "(" + last
		count = min(count*2, maxScanCount, budget)
	}
	return page, nil
}

// Tips implements Store: one HMGET of each topic's meta hash (epoch, last),
// pipelined in one round trip (split by slot in a cluster).
func (s *ValkeyStore) Tips(ctx context.Context, topics []string) (map[string]Tip, error) {
	out := make(map[string]Tip, len(topics))
	if len(topics) == 0 {
		return out, nil
	}
	c, err := s.conn()
	if err != nil {
		return nil, fmt.Errorf("valkey: tips: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	cmds := make(valkey.Commands, len(topics))
	for i, t := range topics {
		cmds[i] = c.B().Hmget().Key(metaKey(t)).Field("epoch", "last").Build()
	}
	for i, r := range c.DoMulti(ctx, cmds...) {
		vals, err := r.ToArray()
		if err != nil || len(vals) != 2 {
			return nil, fmt.Errorf("valkey: tips (%d topics) %q: %w: %w", len(topics), topics[i], messages.ErrUnavailable, errOr(err, "bad reply"))
		}
		var tip Tip
		tip.Epoch, _ = vals[0].ToString()
		if lastText, err := vals[1].ToString(); err == nil {
			if tip.Last, err = messages.ParseID(lastText); err != nil {
				return nil, fmt.Errorf("valkey: tips %q: %w", topics[i], err)
			}
		}
		out[topics[i]] = tip
	}
	return out, nil
}

func errOr(err error, text string) error {
	if err != nil {
		return err
	}
	return errors.New(text)
}

// Ping implements Store: PING within Timeout. The error says why the store
// cannot serve (not connected yet and the last connect error, closed, or
// the PING failure) and wraps messages.ErrUnavailable.
func (s *ValkeyStore) Ping(ctx context.Context) error {
	c, err := s.conn()
	if err != nil {
		return fmt.Errorf("valkey: ping: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		return fmt.Errorf("valkey: ping %s: %w: %w", strings.Join(s.cfg.Addrs, ","), messages.ErrUnavailable, err)
	}
	return nil
}

// Close implements Store: it stops a background connect, waits for calls in
// flight and closes the connections. Later calls fail with
// messages.ErrUnavailable. Close is idempotent.
func (s *ValkeyStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	vc := s.client.Swap(nil)
	s.mu.Unlock()
	close(s.stop)
	s.wg.Wait()
	if vc != nil {
		vc.c.Close()
	}
	return nil
}

// entryFilter decodes stream entries and drops expired and out-of-retention
// ones, as of one instant.
type entryFilter struct {
	now            time.Time
	cutoff         time.Time // zero: no retention
	outOfRetention bool      // an entry was skipped for its age
}

func (s *ValkeyStore) newFilter() *entryFilter {
	f := &entryFilter{now: time.Now()}
	if s.cfg.Limits.Retention > 0 {
		f.cutoff = f.now.Add(-s.cfg.Limits.Retention)
	}
	return f
}

// decode appends to out up to want live messages from an XRANGE/XREVRANGE
// reply, in reply order. It returns out, the id of the last entry looked at
// (the cursor for a further read) and how many entries the reply held.
func (f *entryFilter) decode(topic string, reply valkey.ValkeyMessage, want int, out []messages.Message) ([]messages.Message, string, int, error) {
	entries, err := reply.ToArray()
	if err != nil {
		return out, "", 0, fmt.Errorf("%w: %w", messages.ErrUnavailable, err)
	}
	var last string
	for i := range entries {
		if want <= 0 {
			break
		}
		m, idText, err := decodeEntry(topic, &entries[i])
		if err != nil {
			return out, "", 0, err
		}
		last = idText
		if m.Timestamp.Before(f.cutoff) {
			f.outOfRetention = true
			continue
		}
		if m.Expired(f.now) {
			continue
		}
		out = append(out, m)
		want--
	}
	return out, last, len(entries), nil
}

// decodeEntry turns one stream entry, [id, [field, value, ...]], into a
// message. Unknown fields are ignored.
func decodeEntry(topic string, e *valkey.ValkeyMessage) (messages.Message, string, error) {
	parts, err := e.ToArray()
	if err != nil || len(parts) != 2 {
		return messages.Message{}, "", fmt.Errorf("malformed stream entry")
	}
	idText, err := parts[0].ToString()
	if err != nil {
		return messages.Message{}, "", fmt.Errorf("malformed stream entry id: %w", err)
	}
	m := messages.Message{Topic: topic}
	if m.ID, err = messages.ParseID(idText); err != nil {
		return messages.Message{}, "", fmt.Errorf("entry %s: %w", idText, err)
	}
	fields, _ := parts[1].ToArray() // nil for an entry without fields
	for i := 0; i+1 < len(fields); i += 2 {
		name, _ := fields[i].ToString()
		value, _ := fields[i+1].ToString()
		switch name {
		case "payload":
			m.Payload = json.RawMessage(value)
		case "timestamp":
			if m.Timestamp, err = time.Parse(time.RFC3339Nano, value); err != nil {
				return messages.Message{}, "", fmt.Errorf("entry %s: timestamp: %w", idText, err)
			}
		case "metadata":
			if err := json.Unmarshal([]byte(value), &m.Metadata); err != nil {
				return messages.Message{}, "", fmt.Errorf("entry %s: metadata: %w", idText, err)
			}
		case "expires_at":
			if m.ExpiresAt, err = time.Parse(time.RFC3339Nano, value); err != nil {
				return messages.Message{}, "", fmt.Errorf("entry %s: expires_at: %w", idText, err)
			}
		}
	}
	return m, idText, nil
}
