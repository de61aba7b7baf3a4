package auth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/pulsar-relay/relay/messages"
)

// Claims are the JWT claims the relay reads and issues.
type Claims struct {
	jwt.RegisteredClaims
	Permissions []string `json:"permissions,omitempty"`
	Topics      []string `json:"topics,omitempty"`
	Username    string   `json:"username,omitempty"`
	// SID is the login (refresh-token family) of a relay-issued token.
	// External issuers (OIDC providers such as Keycloak) use the same claim
	// for their own sessions: it names a relay login only in a token the
	// relay's secret verifies (see verifyJWT).
	SID string `json:"sid,omitempty"`
}

// keySet holds the verification keys, chosen by the token's alg and kid.
type keySet struct {
	secret  []byte
	files   map[string]crypto.PublicKey // kid -> key, from PEM files
	jwks    keyfunc.Keyfunc             // nil without a JWKS URL
	methods []string
}

// loadKeys reads the PEM files and starts the JWKS client (its refresh
// goroutine ends with ctx).
func loadKeys(ctx context.Context, cfg Config, log *slog.Logger) (*keySet, error) {
	ks := &keySet{secret: cfg.JWTSecret, files: map[string]crypto.PublicKey{}}
	if len(ks.secret) > 0 {
		ks.methods = append(ks.methods, "HS256")
	}
	for _, f := range cfg.PublicKeyFiles {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("jwt public key: %w", err)
		}
		key, err := parsePublicKey(pem)
		if err != nil {
			return nil, fmt.Errorf("jwt public key %s: %w", f, err)
		}
		kid := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
		ks.files[kid] = key
	}
	if len(ks.files) > 0 || cfg.JWKSURL != "" {
		ks.methods = append(ks.methods, "RS256", "ES256", "EdDSA")
	}
	if cfg.JWKSURL != "" {
		k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
			RefreshInterval:   cfg.JWKSRefresh,
			RefreshUnknownKID: rate.NewLimiter(rate.Every(time.Minute), 1),
			// An unknown kid past that rate is refused at once, not after a
			// wait (the default waits up to a minute per request):
			// rate.Limiter.Wait refuses at once when the next token comes
			// after this deadline. It must not be so short that the context
			// is over before Wait looks at it (1 ms was, under -race on a
			// busy machine: a rotated-in key was refused; TestJWKSKeysByKid).
			RateLimitWaitMax: time.Second,
			HTTPTimeout:      10 * time.Second,
			RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
				return func(_ context.Context, err error) {
					log.Warn("jwks refresh failed", "url", u, "err", err)
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("jwks %s: %w", cfg.JWKSURL, err)
		}
		ks.jwks = k
	}
	return ks, nil
}

func parsePublicKey(pem []byte) (crypto.PublicKey, error) {
	if k, err := jwt.ParseRSAPublicKeyFromPEM(pem); err == nil {
		return k, nil
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(pem); err == nil {
		return k, nil
	}
	if k, err := jwt.ParseEdPublicKeyFromPEM(pem); err == nil {
		return k, nil
	}
	return nil, errors.New("not a PEM RSA, EC or Ed25519 public key")
}

// keyFor is the jwt.Keyfunc: an HMAC token gets the secret only, an
// asymmetric one a public key only (never the other kind, so a token
// "signed" with a public key as an HMAC secret is refused). With a kid the
// named key is used; without one every file key is offered.
func (ks *keySet) keyFor(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if len(ks.secret) == 0 {
			return nil, errors.New("HS256 tokens are not accepted")
		}
		return ks.secret, nil
	case *jwt.SigningMethodRSA, *jwt.SigningMethodECDSA, *jwt.SigningMethodEd25519:
	default:
		return nil, fmt.Errorf("signing method %v not accepted", t.Header["alg"])
	}
	kid, _ := t.Header["kid"].(string)
	if k, ok := ks.files[kid]; ok && kid != "" {
		return k, nil
	}
	if kid != "" && ks.jwks != nil {
		return ks.jwks.Keyfunc(t)
	}
	var set jwt.VerificationKeySet
	for _, k := range ks.files {
		set.Keys = append(set.Keys, k)
	}
	if len(set.Keys) == 0 {
		if ks.jwks != nil {
			return ks.jwks.Keyfunc(t)
		}
		return nil, errors.New("no public key for this token")
	}
	return set, nil
}

// verifyJWT checks signature, exp (required), nbf, iss and aud. own reports
// that the token was verified with the relay's own HS256 secret, the key the
// relay signs its access tokens with (keyFor gives an HMAC token that key and
// nothing else): only such a token can be one the relay issued, and only its
// sid names a relay login. A token an external issuer signed (PEM key, JWKS)
// is never own, whatever its claims say.
func (s *Service) verifyJWT(token string) (c *Claims, own bool, err error) {
	c = new(Claims)
	t, err := s.parser.ParseWithClaims(token, c, s.keys.keyFor)
	if err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			return nil, false, fmt.Errorf("%w: token expired", messages.ErrUnauthorized)
		case errors.Is(err, jwt.ErrTokenNotValidYet):
			return nil, false, fmt.Errorf("%w: token not valid yet", messages.ErrUnauthorized)
		case errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience):
			return nil, false, fmt.Errorf("%w: token issuer or audience not accepted", messages.ErrUnauthorized)
		}
		return nil, false, fmt.Errorf("%w: invalid token", messages.ErrUnauthorized)
	}
	if c.Subject == "" {
		return nil, false, fmt.Errorf("%w: token has no subject", messages.ErrUnauthorized)
	}
	_, own = t.Method.(*jwt.SigningMethodHMAC)
	return c, own && len(s.keys.secret) > 0, nil
}

// newParser builds the parser for cfg's accepted methods.
func newParser(cfg Config, methods []string) *jwt.Parser {
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired(), jwt.WithLeeway(cfg.Leeway), jwt.WithStrictDecoding()}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	return jwt.NewParser(opts...)
}

// issueAccess signs an access token for the user of a login.
func (s *Service) issueAccess(u userView, family string, now time.Time) (string, error) {
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   u.ID,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(s.cfg.AccessTokenTTL)),
			Issuer:    s.cfg.Issuer,
		},
		Permissions: u.Perms.Names(),
		Topics:      u.Topics,
		Username:    u.Username,
		SID:         family,
	}
	if s.cfg.Audience != "" {
		c.Audience = jwt.ClaimStrings{s.cfg.Audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.keys.secret)
}
