package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

func newService(t *testing.T, cfg Config) *Service {
	t.Helper()
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.MinCost
	}
	s, err := New(context.Background(), cfg, persistence.NewMemoryAuthStore(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func writeJSON(t *testing.T, v any) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.json")
	b, _ := json.Marshal(v)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestJWKSKeysByKid(t *testing.T) {
	key1, _ := rsa.GenerateKey(rand.Reader, 2048)
	key2, _ := rsa.GenerateKey(rand.Reader, 2048)
	var hits, rotated atomic.Int32
	jwk := func(kid string, k *rsa.PrivateKey) map[string]any {
		b64 := base64.RawURLEncoding.EncodeToString
		return map[string]any{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
			"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		keys := []any{jwk("k1", key1)}
		if rotated.Load() == 1 {
			keys = append(keys, jwk("k2", key2))
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	defer srv.Close()
	s := newService(t, Config{JWKSURL: srv.URL})
	if !s.Enabled() {
		t.Fatal("a JWKS URL turns auth on")
	}
	sign := func(kid string, k *rsa.PrivateKey) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "u", "exp": time.Now().Add(time.Minute).Unix(), "permissions": []string{"read"}})
		tok.Header["kid"] = kid
		signed, _ := tok.SignedString(k)
		return signed
	}
	ctx := context.Background()
	p, err := s.Authenticate(ctx, sign("k1", key1))
	if err != nil || p.ID != "u" || p.Perms != PermRead {
		t.Fatalf("JWKS token: %+v %v", p, err)
	}
	if _, err := s.Authenticate(ctx, sign("k1", key2)); !errors.Is(err, messages.ErrUnauthorized) {
		t.Fatalf("kid k1 signed by another key: %v", err)
	}
	// The issuer adds k2: a token naming it makes the relay refetch.
	rotated.Store(1)
	before := hits.Load()
	if _, err := s.Authenticate(ctx, sign("k2", key2)); err != nil {
		t.Fatalf("token of a rotated-in key: %v", err)
	}
	if hits.Load() == before {
		t.Fatal("an unknown kid did not refetch the JWKS")
	}
	if _, err := s.Authenticate(ctx, sign("k3", key2)); !errors.Is(err, messages.ErrUnauthorized) {
		t.Fatalf("unknown kid: %v", err)
	}
}

func TestAPIKeysFile(t *testing.T) {
	path := writeJSON(t, []FileAPIKey{{ID: "ci", KeySHA256: HashAPIKey("secret-key-1"), Permissions: []string{"write"}, Topics: []string{"jobs.*"}}})
	s := newService(t, Config{APIKeysFile: path})
	ctx := context.Background()
	p, err := s.Authenticate(ctx, "secret-key-1")
	if err != nil || p.ID != "apikey:ci" || p.Kind != KindAPIKey {
		t.Fatalf("api key: %+v %v", p, err)
	}
	if err := s.Allow(ctx, p, OpWrite, "jobs.1"); err != nil {
		t.Fatalf("allowed topic: %v", err)
	}
	if err := s.Allow(ctx, p, OpWrite, "billing"); !errors.Is(err, messages.ErrForbidden) {
		t.Fatalf("topic outside the patterns: %v", err)
	}
	if err := s.Allow(ctx, p, OpRead, "jobs.1"); !errors.Is(err, messages.ErrForbidden) {
		t.Fatalf("read without the permission: %v", err)
	}
	if _, err := s.Authenticate(ctx, "secret-key-2"); !errors.Is(err, messages.ErrUnauthorized) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := LoadAPIKeysFile(writeJSON(t, []FileAPIKey{{ID: "x", KeySHA256: "short"}})); err == nil {
		t.Fatal("a bad hash was accepted")
	}
}

func TestUsersFileLoginAndOverrides(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw-galaxy"), bcrypt.MinCost)
	path := writeJSON(t, []FileUser{{Username: "galaxy", PasswordHash: string(hash), Permissions: []string{"read", "write"},
		Topics: []string{"galaxy.*"}, RatePublish: 7, RatePublishBurst: 9}})
	s := newService(t, Config{UsersFile: path})
	ctx := context.Background()
	if _, err := s.Login(ctx, "galaxy", "wrong"); !errors.Is(err, messages.ErrUnauthorized) {
		t.Fatalf("wrong password: %v", err)
	}
	pair, err := s.Login(ctx, "galaxy", "pw-galaxy")
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Authenticate(ctx, pair.AccessToken)
	if err != nil || p.ID != "galaxy" || p.Username != "galaxy" || p.RatePublish != 7 || p.RatePublishBurst != 9 || len(p.Topics) != 1 {
		t.Fatalf("principal: %+v %v", p, err)
	}
	// Logout revokes the access token at once on this instance.
	if err := s.Logout(ctx, pair.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, pair.AccessToken); !errors.Is(err, messages.ErrUnauthorized) {
		t.Fatalf("access token after logout: %v", err)
	}
}

func TestAllowTable(t *testing.T) {
	s := newService(t, Config{JWTSecret: []byte("x")})
	ctx := context.Background()
	owner := &Principal{ID: "owner", Kind: KindUser, Perms: PermRead | PermWrite}
	if _, err := s.CreateTopic(ctx, owner, "owned", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Grant(ctx, owner, "owned", "reader", "read"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Grant(ctx, owner, "owned", "writer", "write"); err != nil {
		t.Fatal(err)
	}
	user := func(id string, perms Perm, topics ...string) *Principal {
		return &Principal{ID: id, Kind: KindUser, Perms: perms, Topics: topics}
	}
	rw := PermRead | PermWrite
	cases := []struct {
		name  string
		p     *Principal
		op    Op
		topic string
		ok    bool
	}{
		{"auth off", nil, OpWrite, "owned", true},
		{"admin", user("adm", PermAdmin), OpWrite, "owned", true},
		{"owner writes", owner, OpWrite, "owned", true},
		{"stranger reads owned", user("x", rw), OpRead, "owned", false},
		{"stranger writes owned", user("x", rw), OpWrite, "owned", false},
		{"read grant reads", user("reader", rw), OpRead, "owned", true},
		{"read grant writes", user("reader", rw), OpWrite, "owned", false},
		{"write grant reads", user("writer", rw), OpRead, "owned", true},
		{"unowned, no patterns", user("x", rw), OpWrite, "free", true},
		{"unowned, matching pattern", user("x", rw, "jobs.*"), OpWrite, "jobs.7", true},
		{"unowned, other pattern", user("x", rw, "jobs.*"), OpWrite, "billing", false},
		{"no write permission", user("x", PermRead), OpWrite, "free", false},
		{"no read permission", user("x", PermWrite), OpRead, "free", false},
		{"owner outside own patterns", &Principal{ID: "owner", Perms: rw, Topics: []string{"jobs.*"}}, OpWrite, "owned", false},
	}
	for _, c := range cases {
		err := s.Allow(ctx, c.p, c.op, c.topic)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.name, err, c.ok)
		}
	}
	if _, err := s.UpdateTopic(ctx, owner, "owned", TopicUpdate{Public: new(true)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Allow(ctx, user("x", rw), OpRead, "owned"); err != nil {
		t.Errorf("public topic read: %v", err)
	}
	if err := s.Allow(ctx, user("x", rw), OpWrite, "owned"); err == nil {
		t.Error("public topic write allowed")
	}
}

// TestManageNeedsWritingCredential: the owner's rights to change, grant and
// delete an owned topic hold only through a credential that may write it;
// a read-only one, or one limited to other patterns, gets 403 like a
// stranger and changes nothing.
func TestManageNeedsWritingCredential(t *testing.T) {
	s := newService(t, Config{JWTSecret: []byte("x")})
	ctx := context.Background()
	owner := &Principal{ID: "u1", Kind: KindUser, Perms: PermRead | PermWrite}
	if _, err := s.CreateTopic(ctx, owner, "b.secret", ""); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]*Principal{
		"read-only":      {ID: "u1", Kind: KindAPIKey, Perms: PermRead},
		"other patterns": {ID: "u1", Kind: KindUser, Perms: PermRead | PermWrite, Topics: []string{"a.*"}},
		"stranger":       {ID: "u2", Kind: KindUser, Perms: PermRead | PermWrite},
	} {
		if _, err := s.Grant(ctx, p, "b.secret", "attacker", "write"); !errors.Is(err, messages.ErrForbidden) {
			t.Errorf("%s: Grant = %v, want forbidden", name, err)
		}
		if _, err := s.UpdateTopic(ctx, p, "b.secret", TopicUpdate{Public: new(true)}); !errors.Is(err, messages.ErrForbidden) {
			t.Errorf("%s: UpdateTopic = %v, want forbidden", name, err)
		}
		if err := s.DeleteTopic(ctx, p, "b.secret"); !errors.Is(err, messages.ErrForbidden) {
			t.Errorf("%s: DeleteTopic = %v, want forbidden", name, err)
		}
	}
	got, err := s.GetTopic(ctx, owner, "b.secret")
	if err != nil {
		t.Fatal(err)
	}
	if got.Public || len(got.Grants) != 0 {
		t.Fatalf("topic changed by refused calls: %+v", got)
	}
	if _, err := s.Grant(ctx, owner, "b.secret", "friend", "read"); err != nil {
		t.Fatalf("owner's own Grant: %v", err)
	}
	if err := s.DeleteTopic(ctx, owner, "b.secret"); err != nil {
		t.Fatalf("owner's own DeleteTopic: %v", err)
	}
}

func TestLimiterDecisions(t *testing.T) {
	l := NewLimiter(50, 50, 10)
	now := time.Unix(1000, 0)
	for i := range 50 {
		if d := l.Allow("a", now); !d.Allowed || d.Remaining != 49-i || d.Limit != 50 {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	d := l.Allow("a", now)
	if d.Allowed || d.RetryAfter != 20*time.Millisecond || d.Remaining != 0 || d.Reset != time.Second {
		t.Fatalf("over the burst: %+v", d)
	}
	if !errors.Is(d.Err(), messages.ErrRateLimited) {
		t.Fatal(d.Err())
	}
	if !l.Allow("b", now).Allowed {
		t.Fatal("another identity limited")
	}
	if !l.Allow("a", now.Add(20*time.Millisecond)).Allowed {
		t.Fatal("no token after its interval")
	}
	// Bounded: 10 identities at most.
	for i := range 100 {
		l.Allow(string(rune('A'+i)), now)
	}
	if n := l.Len(); n > 10 {
		t.Fatalf("%d identities tracked", n)
	}
	// Callers race: a now older than one already seen must not mint tokens.
	back := NewLimiter(1, 1, 10)
	t0 := time.Unix(2000, 0)
	if !back.Allow("x", t0.Add(time.Second)).Allowed || back.Allow("x", t0).Allowed || back.Allow("x", t0.Add(time.Second)).Allowed {
		t.Fatal("a step back in time refilled the bucket")
	}
	var nilLim *Limiter
	if !nilLim.Allow("x", now).Allowed {
		t.Fatal("an off limiter refused")
	}
	c := newConcurrency(1)
	rel, d := c.Acquire("x")
	if !d.Allowed {
		t.Fatal(d)
	}
	if _, d := c.Acquire("x"); d.Allowed {
		t.Fatal("second stream allowed")
	}
	rel()
	rel()
	if _, d := c.Acquire("x"); !d.Allowed || c.Len() != 1 {
		t.Fatal("slot not freed once")
	}
}

// TestGrantUserIDBounded: a grant's user id is bounded (it is a key of the
// topic record every read returns): too long, not UTF-8 or with control
// characters is ErrInvalid and nothing is stored; an external subject's id
// of any other form is granted.
func TestGrantUserIDBounded(t *testing.T) {
	s := newService(t, Config{JWTSecret: []byte("x")})
	ctx := context.Background()
	owner := &Principal{ID: "owner", Kind: KindUser, Perms: PermRead | PermWrite}
	if _, err := s.CreateTopic(ctx, owner, "owned", ""); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", strings.Repeat("u", maxGranteeLen+1), "a\x00b", "tab\there", "\xff\xfe"} {
		if _, err := s.Grant(ctx, owner, "owned", bad, "read"); !errors.Is(err, messages.ErrInvalid) {
			t.Errorf("grant to %q: %v, want ErrInvalid", bad, err)
		}
	}
	ok := []string{strings.Repeat("u", maxGranteeLen), "auth0|5f7c8ec7c33c6c004bbafe82", "Zoë Smith"}
	for _, id := range ok {
		if _, err := s.Grant(ctx, owner, "owned", id, "read"); err != nil {
			t.Errorf("grant to %q: %v", id, err)
		}
	}
	topic, err := s.GetTopic(ctx, owner, "owned")
	if err != nil {
		t.Fatal(err)
	}
	if len(topic.Grants) != len(ok) {
		t.Fatalf("grants %v, want exactly the %d valid ones", topic.Grants, len(ok))
	}
}

// An unknown user's login is checked against a hash as costly as the
// dearest it could have been checked against: the users file's hashes may
// have any cost, and a cheaper one told which names the file holds (a
// cost-12 user's wrong password took four times as long as an unknown
// name, checked at 10).
func TestUnknownUserCheckedAtTheUsersFileCost(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw-costly"), 11)
	path := writeJSON(t, []FileUser{{Username: "costly", PasswordHash: string(hash), Permissions: []string{"read"}}})
	s := newService(t, Config{UsersFile: path, BcryptCost: bcrypt.MinCost})
	if _, err := s.Login(context.Background(), "nobody", "pw"); !errors.Is(err, messages.ErrUnauthorized) {
		t.Fatalf("unknown user: %v", err)
	}
	if c, err := bcrypt.Cost(s.dummyHash()); err != nil || c != 11 {
		t.Fatalf("an unknown user is checked at cost %d (%v), want 11, the users file's", c, err)
	}
	plain := newService(t, Config{UsersFile: writeJSON(t, []FileUser{}), BcryptCost: 5})
	if c, _ := bcrypt.Cost(plain.dummyHash()); c != 5 {
		t.Fatalf("with no users-file hash, cost %d, want the relay's own 5", c)
	}
}
