package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// maxCachedTokens bounds the verified-token cache; when full it is emptied.
const maxCachedTokens = 10_000

// maxCachedTopics bounds the topic-record cache likewise.
const maxCachedTopics = 100_000

// loginCheckTTL is how long LoginRevoked trusts the store's answer that a
// login is live: a logout or a refresh-token replay on another relay ends
// that login's open streams here within about this long (this relay's own
// revocations at once). Longer than CacheTTL because it is asked for every
// open stream, not for each request.
const loginCheckTTL = 5 * time.Second

// maxCachedLogins bounds LoginRevoked's cache: above the streams one relay
// holds (RELAY_MAX_CONNECTIONS), so that streams of as many logins do not
// empty it every pass of the login watcher (each entry is about 100 bytes).
const maxCachedLogins = 100_000

// Service is the relay's authentication and authorization.
//
// Concurrency: safe for concurrent use. Close stops its background work.
type Service struct {
	cfg       Config
	enabled   bool
	store     Store
	log       *slog.Logger
	keys      *keySet
	parser    *jwt.Parser
	fileUsers map[string]userView
	apiKeys   []apiKey
	issues    bool // the relay logs users in and issues tokens

	// Verified tokens, reused for up to CacheTTL. gen is bumped on every
	// local revocation so cached logins are checked again at once.
	tokMu  sync.Mutex
	tokens map[string]cachedToken
	gen    atomic.Uint64

	topicMu sync.Mutex
	topics  map[string]cachedTopic

	// Logins (families) LoginRevoked found live, until when; and those
	// revoked (this relay's revocations at once). Bounded by
	// maxCachedLogins, emptied when full.
	loginMu sync.Mutex
	logins  map[string]cachedLogin

	limits *Limits

	// dummyHash is what an unknown user's login is checked against (made
	// on first use, at dummyCost).
	dummyHash func() []byte

	cancel context.CancelFunc
}

type cachedToken struct {
	p     *Principal
	until time.Time
	gen   uint64
}

type cachedLogin struct {
	revoked bool
	until   time.Time // revoked entries: never stale
}

type cachedTopic struct {
	rec   *persistence.TopicRecord // nil: not owned
	until time.Time
}

// New builds the service: it reads the key, users and API keys files,
// starts the JWKS client and creates or updates the bootstrap admin. With
// no credential source configured it returns a service whose Enabled is
// false (rate limits still work). store must not be nil.
func New(ctx context.Context, cfg Config, store Store, logger *slog.Logger) (*Service, error) {
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bg, cancel := context.WithCancel(context.Background())
	s := &Service{cfg: cfg, enabled: cfg.Enabled(), store: store, log: logger,
		tokens: map[string]cachedToken{}, topics: map[string]cachedTopic{}, logins: map[string]cachedLogin{}, cancel: cancel,
		limits: newLimits(cfg.Rates)}
	s.dummyHash = sync.OnceValue(func() []byte {
		h, _ := bcrypt.GenerateFromPassword([]byte("relay-dummy-password"), s.dummyCost())
		return h
	})
	// The relay logs users in (and signs their tokens) when it has users
	// (a file, a bootstrap admin) or a secret to sign with (users an admin
	// holding an external token created).
	s.issues = cfg.UsersFile != "" || cfg.AdminUsername != "" || len(cfg.JWTSecret) > 0
	if s.issues && len(cfg.JWTSecret) == 0 {
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		cfg.JWTSecret = secret
		s.cfg.JWTSecret = secret
		logger.Warn("auth: RELAY_JWT_SECRET is not set; tokens are signed with a random secret that other instances do not know and a restart forgets")
	}
	if n := len(cfg.JWTSecret); n > 0 && n < 32 {
		logger.Warn("auth: RELAY_JWT_SECRET is shorter than 32 bytes; use a long random secret (openssl rand -hex 32)")
	}
	var err error
	if s.keys, err = loadKeys(bg, cfg, logger); err != nil {
		cancel()
		return nil, err
	}
	if len(s.keys.methods) > 0 {
		s.parser = newParser(cfg, s.keys.methods)
	}
	if cfg.UsersFile != "" {
		if s.fileUsers, err = LoadUsersFile(cfg.UsersFile); err != nil {
			cancel()
			return nil, err
		}
	}
	if cfg.APIKeysFile != "" {
		if s.apiKeys, err = LoadAPIKeysFile(cfg.APIKeysFile); err != nil {
			cancel()
			return nil, err
		}
	}
	if cfg.AdminUsername != "" {
		err := s.bootstrapAdmin(ctx)
		if errors.Is(err, messages.ErrUnavailable) { // the store connects in the background
			logger.Warn("auth: store unavailable; creating the admin user in the background", "err", err)
			go s.retryBootstrap(bg)
		} else if err != nil {
			cancel()
			return nil, err
		}
	}
	return s, nil
}

// retryBootstrap retries bootstrapAdmin with backoff until it succeeds or
// the service is closed.
func (s *Service) retryBootstrap(ctx context.Context) {
	delay := 200 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		err := s.bootstrapAdmin(ctx)
		if err == nil {
			s.log.Info("auth: admin user ready")
			return
		}
		if !errors.Is(err, messages.ErrUnavailable) {
			s.log.Error("auth: cannot create the admin user", "err", err)
			return
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// Enabled reports whether authentication is on.
func (s *Service) Enabled() bool { return s != nil && s.enabled }

// Limits returns the per-identity rate limits.
func (s *Service) Limits() *Limits { return s.limits }

// Leeway is the clock skew tolerated on a token's exp (Config.Leeway): a
// token verifies until ExpiresAt + Leeway, so a holder of it (a WebSocket,
// an SSE stream) lives as long. 0 for a nil Service.
func (s *Service) Leeway() time.Duration {
	if s == nil {
		return 0
	}
	return s.cfg.Leeway
}

// Close stops the JWKS refresh.
func (s *Service) Close() { s.cancel() }

// Authenticate verifies a bearer credential: a JWT (three dot-separated
// parts) or an API key. Errors wrap messages.ErrUnauthorized (with "token
// expired" for an expired token) or messages.ErrUnavailable (the store could
// not say whether the login is revoked). Verified tokens are cached for up
// to CacheTTL (never past their expiry).
func (s *Service) Authenticate(ctx context.Context, token string) (*Principal, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: credential required", messages.ErrUnauthorized)
	}
	now := time.Now()
	gen := s.gen.Load()
	s.tokMu.Lock()
	c, ok := s.tokens[token]
	s.tokMu.Unlock()
	if ok && now.Before(c.until) && c.gen == gen {
		return c.p, nil
	}
	p, err := s.authenticate(ctx, token, now)
	if err != nil {
		return nil, err
	}
	until := now.Add(s.cfg.CacheTTL)
	if !p.ExpiresAt.IsZero() && p.ExpiresAt.Before(until) {
		until = p.ExpiresAt
	}
	s.tokMu.Lock()
	if len(s.tokens) >= maxCachedTokens {
		clear(s.tokens)
	}
	s.tokens[token] = cachedToken{p: p, until: until, gen: gen}
	s.tokMu.Unlock()
	return p, nil
}

func (s *Service) authenticate(ctx context.Context, token string, now time.Time) (*Principal, error) {
	if strings.Count(token, ".") != 2 {
		if p := matchAPIKey(s.apiKeys, token); p != nil {
			return p, nil
		}
		return nil, fmt.Errorf("%w: invalid credential", messages.ErrUnauthorized)
	}
	if s.parser == nil {
		return nil, fmt.Errorf("%w: tokens are not accepted", messages.ErrUnauthorized)
	}
	c, own, err := s.verifyJWT(token)
	if err != nil {
		return nil, err
	}
	perms, err := ParsePerms(c.Permissions)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", messages.ErrUnauthorized, err)
	}
	if validPatterns(c.Topics) != nil {
		return nil, fmt.Errorf("%w: bad topic pattern in token", messages.ErrUnauthorized)
	}
	p := &Principal{ID: c.Subject, Username: c.Username, Kind: KindUser, Perms: perms, Topics: c.Topics}
	if c.ExpiresAt != nil {
		p.ExpiresAt = c.ExpiresAt.Time
	}
	// The sid of a token the relay issued names one of its logins, revoked
	// by a logout or a refresh-token replay. An external issuer's token
	// (PEM key, JWKS) may carry a sid of its own (OIDC providers put their
	// session there): that is no relay login, and the store, which never
	// saw it, would call it revoked. Only a token verified with the relay's
	// secret, whose sid has the shape of a family, is checked.
	if own && isFamily(c.SID) {
		p.Family = c.SID
		revoked, err := s.store.RefreshRevoked(ctx, c.SID)
		if err != nil {
			return nil, err
		}
		if revoked {
			return nil, fmt.Errorf("%w: login revoked", messages.ErrUnauthorized)
		}
	}
	if u, ok := s.fileUsers[c.Username]; ok && u.ID == c.Subject {
		p.RatePublish, p.RatePublishBurst = u.RatePublish, u.RatePublishBurst
	}
	return p, nil
}

// TokenPair is the answer to a login or a refresh.
type TokenPair struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// Login checks a username and password and starts a login: a new
// refresh-token family. A wrong username and a wrong password give the same
// error (wrapping messages.ErrUnauthorized), in the same time.
func (s *Service) Login(ctx context.Context, username, password string) (TokenPair, error) {
	if !s.issues {
		return TokenPair{}, fmt.Errorf("%w: password login is not configured", messages.ErrUnauthorized)
	}
	u, err := s.checkPassword(ctx, username, password)
	if err != nil {
		return TokenPair{}, err
	}
	family := newID()
	key := newFamilyKey()
	refresh, hash := newRefreshToken(family, key)
	if err := s.store.CreateRefresh(ctx, persistence.RefreshRecord{Family: family, UserID: u.ID, Username: u.Username, Hash: hash, Key: key}, s.cfg.RefreshTokenTTL); err != nil {
		return TokenPair{}, err
	}
	return s.pair(u, family, refresh)
}

func (s *Service) pair(u userView, family, refresh string) (TokenPair, error) {
	access, err := s.issueAccess(u, family, time.Now())
	if err != nil {
		return TokenPair{}, fmt.Errorf("sign token: %w", err)
	}
	return TokenPair{AccessToken: access, TokenType: "bearer", ExpiresIn: int(s.cfg.AccessTokenTTL.Seconds()), RefreshToken: refresh}, nil
}

// Refresh spends a refresh token and returns a new pair. A spent token
// presented again revokes the whole login (every access and refresh token
// of it) and fails; so does an unknown, expired or revoked one. A token
// the relay never issued for the login (anybody who has seen an access
// token can read the family from its sid and add 64 hex digits) fails
// without revoking anything: it is no replay. Errors wrap
// messages.ErrUnauthorized.
func (s *Service) Refresh(ctx context.Context, refresh string) (TokenPair, error) {
	family, ok := familyOf(refresh)
	if !ok || !s.issues {
		return TokenPair{}, persistence.ErrRefreshInvalid
	}
	fam, err := s.store.RefreshFamily(ctx, family)
	if err != nil {
		return TokenPair{}, err
	}
	// The family's key tells a spent token (issued for it: RotateRefresh
	// below then revokes the login) from a forged one. A family stored
	// before keys (Key "") keeps the old rule: any other token revokes.
	if fam.Key != "" && !issuedFor(fam.Key, refresh) {
		return TokenPair{}, persistence.ErrRefreshInvalid
	}
	next, hash := newRefreshToken(family, fam.Key)
	rec, err := s.store.RotateRefresh(ctx, family, hashToken(refresh), hash, s.cfg.RefreshTokenTTL)
	if err != nil {
		if errors.Is(err, persistence.ErrRefreshReused) {
			s.revoked(family)
			s.log.Warn("auth: refresh token reused; login revoked")
		}
		return TokenPair{}, err
	}
	u, err := s.lookupUser(ctx, rec.Username)
	if err != nil || u.ID != rec.UserID {
		_ = s.store.RevokeRefresh(ctx, family)
		return TokenPair{}, fmt.Errorf("%w: user no longer exists", messages.ErrUnauthorized)
	}
	return s.pair(u, family, next)
}

// Logout revokes the login a refresh token belongs to (its access tokens
// too) when the token is the login's current one, or a spent one of it (a
// replay, revoked as Refresh does).
//
// Any other token revokes nothing and is not an error: malformed, unknown,
// expired, revoked, or never issued for the login. The last is what a
// caller who read the family from an access token's sid can make up; it
// must not log the victim out. The handler answers 204 for it as for a
// real logout, as it always has for an unknown token: a 401 for a wrong
// secret of a live family, against 204 for an unknown one, would tell a
// prober which logins exist, and a client learns nothing it could act on
// (the token it presented is of no use to it either way).
func (s *Service) Logout(ctx context.Context, refresh string) error {
	family, ok := familyOf(refresh)
	if !ok {
		return nil
	}
	revoked, err := s.store.RevokeRefreshIfCurrent(ctx, family, hashToken(refresh))
	if err != nil {
		return err
	}
	if !revoked {
		fam, err := s.store.RefreshFamily(ctx, family)
		if errors.Is(err, persistence.ErrRefreshInvalid) {
			return nil
		}
		if err != nil {
			return err
		}
		if fam.Key == "" || !issuedFor(fam.Key, refresh) {
			return nil
		}
		if err := s.store.RevokeRefresh(ctx, family); err != nil {
			return err
		}
		s.log.Warn("auth: spent refresh token presented to logout; login revoked")
	}
	s.revoked(family)
	return nil
}

// revoked notes a revocation made through this relay: cached tokens are
// checked again at once, and LoginRevoked knows the login ended.
func (s *Service) revoked(family string) {
	s.gen.Add(1)
	s.noteLogin(family, cachedLogin{revoked: true})
}

func (s *Service) noteLogin(family string, c cachedLogin) {
	s.loginMu.Lock()
	if len(s.logins) >= maxCachedLogins {
		clear(s.logins)
	}
	s.logins[family] = c
	s.loginMu.Unlock()
}

// KnownRevoked reports whether LoginRevoked last found p's login revoked
// (or this relay revoked it), without asking the store: for paths that
// must not wait on it (a WebSocket's reader), while LoginRevoked's callers
// keep the answer fresh.
func (s *Service) KnownRevoked(p *Principal) bool {
	if p == nil || p.Family == "" {
		return false
	}
	s.loginMu.Lock()
	defer s.loginMu.Unlock()
	return s.logins[p.Family].revoked
}

// LoginRevoked reports whether the login p's token belongs to has been
// revoked since the token was verified: by a logout or a refresh-token
// replay, on any relay sharing the store. The gateway's login watcher asks
// it for every open stream each second, so a revoked login's open streams
// end as its requests get 401.
// A credential without a relay login (API key, external token, p nil)
// never is. The store's "live" is trusted for loginCheckTTL; this relay's
// own revocations are known at once. Errors wrap messages.ErrUnavailable.
func (s *Service) LoginRevoked(ctx context.Context, p *Principal) (bool, error) {
	if p == nil || p.Family == "" {
		return false, nil
	}
	now := time.Now()
	s.loginMu.Lock()
	c, ok := s.logins[p.Family]
	s.loginMu.Unlock()
	if ok && (c.revoked || now.Before(c.until)) {
		return c.revoked, nil
	}
	revoked, err := s.store.RefreshRevoked(ctx, p.Family)
	if err != nil {
		return false, err
	}
	s.noteLogin(p.Family, cachedLogin{revoked: revoked, until: now.Add(loginCheckTTL)})
	return revoked, nil
}

// Refresh tokens are "<family>.<secret>", the secret 64 hex digits: a
// random 16-byte nonce and the first 16 bytes of HMAC-SHA256(key, family
// "." nonce), key being the family's own random key, which only the store
// holds. The store keeps the hash of the current token only; the MAC lets
// the relay tell a spent token of the family (a replay) from one it never
// issued, without keeping every spent hash.
const (
	refreshNonceLen = 16
	refreshTagLen   = 16
)

// newFamilyKey returns a new family's key, hex.
func newFamilyKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newRefreshToken returns a new token of the family and its hash. key ""
// (a family stored before keys) makes a secret of 32 random bytes.
func newRefreshToken(family, key string) (token, hash string) {
	var b [refreshNonceLen + refreshTagLen]byte
	if key == "" {
		_, _ = rand.Read(b[:])
	} else {
		_, _ = rand.Read(b[:refreshNonceLen])
		copy(b[refreshNonceLen:], refreshTag(key, family, b[:refreshNonceLen]))
	}
	token = family + "." + hex.EncodeToString(b[:])
	return token, hashToken(token)
}

func refreshTag(key, family string, nonce []byte) []byte {
	k, _ := hex.DecodeString(key)
	m := hmac.New(sha256.New, k)
	m.Write([]byte(family + "." + hex.EncodeToString(nonce)))
	return m.Sum(nil)[:refreshTagLen]
}

// issuedFor reports whether token (well-formed, see familyOf) carries a
// valid MAC under its family's key: the relay issued it, spent or not.
func issuedFor(key, token string) bool {
	family, secret, _ := strings.Cut(token, ".")
	b, err := hex.DecodeString(secret)
	if err != nil || len(b) != refreshNonceLen+refreshTagLen {
		return false
	}
	return hmac.Equal(b[refreshNonceLen:], refreshTag(key, family, b[:refreshNonceLen]))
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

// familyOf returns the family of a refresh token (32 hex digits before the dot).
func familyOf(t string) (string, bool) {
	f, rest, ok := strings.Cut(t, ".")
	if !ok || len(rest) != 64 || !isFamily(f) {
		return "", false
	}
	return f, true
}

// isFamily reports whether f has the shape of a family id (newID: 32 hex
// digits).
func isFamily(f string) bool {
	if len(f) != 32 {
		return false
	}
	_, err := hex.DecodeString(f)
	return err == nil
}

// Me describes the caller: GET /auth/me.
type Me struct {
	UserID      string   `json:"user_id"`
	Username    string   `json:"username"`
	Permissions []string `json:"permissions"`
	OwnedTopics []string `json:"owned_topics"`
}

// WhoAmI returns the caller's description with the topics it owns (read
// from the owner's own index: at most RateConfig.OwnedTopics).
func (s *Service) WhoAmI(ctx context.Context, p *Principal) (Me, error) {
	owned, err := s.store.OwnedTopics(ctx, p.ID)
	if err != nil {
		return Me{}, err
	}
	if owned == nil {
		owned = []string{}
	}
	return Me{UserID: p.ID, Username: p.Username, Permissions: p.Perms.Names(), OwnedTopics: owned}, nil
}

// Sizes reports the entries of every bounded map auth keeps, by kind, for
// a gauge: token_cache (max 10,000), topic_cache (max 100,000), and the
// identities of each rate limiter (max RateConfig.MaxIdentities each).
func (s *Service) Sizes() map[string]int {
	s.tokMu.Lock()
	tokens := len(s.tokens)
	s.tokMu.Unlock()
	s.topicMu.Lock()
	topics := len(s.topics)
	s.topicMu.Unlock()
	sizes := map[string]int{
		"token_cache": tokens, "topic_cache": topics,
		"rate_publish": s.limits.Publish.Len(), "rate_ws_frames": s.limits.WSFrames.Len(),
		"rate_login_user": s.limits.LoginUser.Len(), "rate_login_addr": s.limits.LoginAddr.Len(),
		"streams": s.limits.Connections.Len(), "subscriptions": s.limits.Subscriptions.Len(),
	}
	// The memory store's logins (a Valkey store's are Valkey's memory).
	if f, ok := s.store.(interface{ RefreshFamilies() int }); ok {
		sizes["logins"] = f.RefreshFamilies()
	}
	return sizes
}
