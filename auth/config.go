package auth

import "time"

// Config configures a Service. The zero value of each field means its
// default (named in the comment); parsing happens in cmd/relay.
//
// Authentication is on when any credential source is set: JWTSecret,
// PublicKeyFiles, JWKSURL, UsersFile, AdminUsername (with AdminPassword) or
// APIKeysFile. Rate limits apply whether or not it is on.
type Config struct {
	// JWTSecret verifies HS256 tokens and signs the access tokens the relay
	// issues (RELAY_JWT_SECRET). When empty and the relay issues tokens
	// (users file or bootstrap admin), a random secret is made at start:
	// instances then do not accept each other's tokens.
	JWTSecret []byte
	// PublicKeyFiles are PEM files of RS256, ES256 or EdDSA public keys
	// (RELAY_JWT_PUBLIC_KEYS). A key's kid is its file's base name without
	// extension; tokens with another kid (or none) try every file key.
	PublicKeyFiles []string
	// JWKSURL is fetched at start and refreshed every JWKSRefresh (default
	// 10m), and when a token names an unknown kid (at most once a minute)
	// (RELAY_JWKS_URL).
	JWKSURL     string
	JWKSRefresh time.Duration
	// Issuer and Audience, when set, must match the token's iss and aud
	// (RELAY_JWT_ISSUER, RELAY_JWT_AUDIENCE); the relay's own tokens carry them.
	Issuer   string
	Audience string
	// Leeway tolerates clock skew on exp, nbf and iat (RELAY_JWT_LEEWAY,
	// default 0).
	Leeway time.Duration
	// UsersFile is a JSON file of users (RELAY_USERS_FILE), see LoadUsersFile.
	UsersFile string
	// AdminUsername and AdminPassword create (or reset the password of) an
	// admin user in the store at start (RELAY_ADMIN_USERNAME, RELAY_ADMIN_PASSWORD).
	AdminUsername string
	AdminPassword string
	// APIKeysFile is a JSON file of hashed API keys (RELAY_API_KEYS_FILE),
	// see LoadAPIKeysFile.
	APIKeysFile string
	// AccessTokenTTL is the life of an issued access token
	// (RELAY_ACCESS_TOKEN_TTL, default 30m); RefreshTokenTTL the life of a
	// login without use (RELAY_REFRESH_TOKEN_TTL, default 7 days).
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	// CacheTTL is how long a verified token and a topic's owner record are
	// reused without asking the store again (default 1s). A revocation or a
	// grant change made on another instance is honoured within it; one made
	// on this instance at once.
	CacheTTL time.Duration
	// BcryptCost for passwords hashed by the relay (default bcrypt.DefaultCost).
	BcryptCost int

	Rates RateConfig
}

// RateConfig sets the per-identity limits; 0 turns a limit off.
type RateConfig struct {
	// Publish requests per second and burst (RELAY_RATE_PUBLISH,
	// RELAY_RATE_PUBLISH_BURST; burst default: the rate rounded up). A bulk
	// request counts as one.
	Publish      float64
	PublishBurst int
	// WSFrames: client WebSocket frames per second per identity, burst the
	// same (RELAY_RATE_WS_FRAMES).
	WSFrames float64
	// Connections: concurrent WebSocket, SSE and poll requests per identity
	// (RELAY_RATE_CONNECTIONS).
	Connections int
	// Subscriptions: topics subscribed at once per identity, over all its
	// connections (RELAY_RATE_SUBSCRIPTIONS). Each subscribed topic keeps a
	// topic actor, of which the relay runs at most RELAY_MAX_TOPICS.
	Subscriptions int
	// OwnedTopics: topics one user (or API key, or external token's sub)
	// may own at once (RELAY_RATE_OWNED_TOPICS; 0: only the relay's
	// 100,000 in all), so that one account cannot take them all. Admins
	// are not bound by it.
	OwnedTopics int
	// LoginPerMinute: login attempts per username and per address per
	// minute (RELAY_RATE_LOGIN, default 30; negative: off).
	LoginPerMinute int
	// MaxIdentities bounds the identities each limiter tracks (default
	// 100,000); idle ones are forgotten first.
	MaxIdentities int
}

func (c Config) withDefaults() Config {
	if c.JWKSRefresh <= 0 {
		c.JWKSRefresh = 10 * time.Minute
	}
	if c.AccessTokenTTL <= 0 {
		c.AccessTokenTTL = 30 * time.Minute
	}
	if c.RefreshTokenTTL <= 0 {
		c.RefreshTokenTTL = 7 * 24 * time.Hour
	}
	if c.CacheTTL <= 0 {
		c.CacheTTL = time.Second
	}
	if c.BcryptCost <= 0 {
		c.BcryptCost = 10 // bcrypt.DefaultCost
	}
	if c.Rates.PublishBurst <= 0 && c.Rates.Publish > 0 {
		c.Rates.PublishBurst = max(1, int(c.Rates.Publish+0.999))
	}
	if c.Rates.LoginPerMinute == 0 {
		c.Rates.LoginPerMinute = 30
	}
	if c.Rates.MaxIdentities <= 0 {
		c.Rates.MaxIdentities = 100_000
	}
	return c
}

// Enabled reports whether c turns authentication on.
func (c Config) Enabled() bool {
	return len(c.JWTSecret) > 0 || len(c.PublicKeyFiles) > 0 || c.JWKSURL != "" ||
		c.UsersFile != "" || c.AdminUsername != "" || c.APIKeysFile != ""
}
