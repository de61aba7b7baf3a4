package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// reviewService is a relay that logs users in (bootstrap admin alice) and
// also accepts RS256 tokens of key, from a PEM file (kid "idp") and from a
// JWKS (kid "jwks-idp"). CacheTTL is tiny so every Authenticate asks the
// store.
func reviewService(t *testing.T, key *rsa.PrivateKey) (*Service, *persistence.MemoryAuthStore) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemPath := filepath.Join(t.TempDir(), "idp.pem")
	if err := os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]any{"kty": "RSA", "kid": "jwks-idp", "alg": "RS256", "use": "sig",
			"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes())}}})
	}))
	t.Cleanup(jwks.Close)
	store := persistence.NewMemoryAuthStore(nil)
	s, err := New(context.Background(), Config{
		JWTSecret:      []byte("0123456789abcdef0123456789abcdef"),
		PublicKeyFiles: []string{pemPath},
		JWKSURL:        jwks.URL,
		AdminUsername:  "alice", AdminPassword: "pw-alice-123",
		BcryptCost: bcrypt.MinCost, CacheTTL: time.Nanosecond,
	}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, store
}

// sidOf reads the sid claim of a token without verifying it, as anyone who
// sees an access token can.
func sidOf(t *testing.T, token string) string {
	t.Helper()
	var c Claims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		t.Fatal(err)
	}
	if c.SID == "" {
		t.Fatal("access token without sid")
	}
	return c.SID
}

// TestExternalTokenWithSIDAccepted: an external issuer's token (PEM key or
// JWKS) carrying a sid of its own session, which the relay never created,
// is accepted (it was refused "login revoked"); a relay-issued access token
// of a revoked login is still refused.
func TestExternalTokenWithSIDAccepted(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	s, _ := reviewService(t, key)
	ctx := context.Background()
	sign := func(kid string, sid any) string {
		claims := jwt.MapClaims{"sub": "ext-user", "exp": time.Now().Add(time.Minute).Unix(), "permissions": []string{"read"}}
		if sid != nil {
			claims["sid"] = sid
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
		tok.Header["kid"] = kid
		signed, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return signed
	}
	for _, kid := range []string{"idp", "jwks-idp"} {
		for _, sid := range []any{nil, "6f1c7a52-3a5e-4e0b-9d0e-2b8f1c2d3e4f", "0123456789abcdef0123456789abcdef"} {
			p, err := s.Authenticate(ctx, sign(kid, sid))
			if err != nil {
				t.Errorf("kid %s, sid %v: %v", kid, sid, err)
				continue
			}
			if p.ID != "ext-user" || p.Family != "" {
				t.Errorf("kid %s, sid %v: principal %+v (an external sid is no relay login)", kid, sid, p)
			}
		}
	}

	// The relay's own tokens are still checked against their login.
	pair, err := s.Login(ctx, "alice", "pw-alice-123")
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Authenticate(ctx, pair.AccessToken)
	if err != nil || p.Family != sidOf(t, pair.AccessToken) {
		t.Fatalf("own token: %+v %v", p, err)
	}
	if err := s.Logout(ctx, pair.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, pair.AccessToken); !errors.Is(err, messages.ErrUnauthorized) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("own access token of a revoked login: %v, want login revoked", err)
	}
	// An HS256 token with the relay's secret naming a login the relay never
	// made is refused too (it can only be the relay's, and that login is
	// not live).
	forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "x", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))},
		SID:              "fedcba9876543210fedcba9876543210",
	}).SignedString([]byte("0123456789abcdef0123456789abcdef"))
	if _, err := s.Authenticate(ctx, forged); !errors.Is(err, messages.ErrUnauthorized) {
		t.Fatalf("own-secret token of an unknown login: %v", err)
	}
}

// TestLogoutForgedSecretRevokesNothing: a refresh token made of a victim's
// family (the sid of any of its access tokens) and a secret the relay never
// issued logs nobody out (it did); the answer is still nil (204), as for an
// unknown token. The real token, current or spent, still logs out.
func TestLogoutForgedSecretRevokesNothing(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	s, _ := reviewService(t, key)
	ctx := context.Background()
	pair, err := s.Login(ctx, "alice", "pw-alice-123")
	if err != nil {
		t.Fatal(err)
	}
	sid := sidOf(t, pair.AccessToken)
	for _, secret := range []string{strings.Repeat("0", 64), strings.Repeat("f", 64), pair.RefreshToken[33:65] + strings.Repeat("a", 32)} {
		if err := s.Logout(ctx, sid+"."+secret); err != nil {
			t.Fatalf("forged logout: %v, want nil (204) as for an unknown token", err)
		}
	}
	if _, err := s.Authenticate(ctx, pair.AccessToken); err != nil {
		t.Fatalf("a forged logout revoked the victim's access token: %v", err)
	}
	next, err := s.Refresh(ctx, pair.RefreshToken)
	if err != nil {
		t.Fatalf("a forged logout revoked the victim's refresh token: %v", err)
	}
	// The current token logs out.
	if err := s.Logout(ctx, next.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, next.AccessToken); !errors.Is(err, messages.ErrUnauthorized) {
		t.Fatalf("access token after logout: %v", err)
	}

	// A spent token of the login presented to logout is a replay: it
	// revokes the login as Refresh would.
	pair2, err := s.Login(ctx, "alice", "pw-alice-123")
	if err != nil {
		t.Fatal(err)
	}
	next2, err := s.Refresh(ctx, pair2.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Logout(ctx, pair2.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Refresh(ctx, next2.RefreshToken); !errors.Is(err, messages.ErrUnauthorized) {
		t.Fatalf("refresh after logout with a spent token: %v", err)
	}
}

// TestRefreshForgedSecretRevokesNothing: presenting "<victim's sid>.<64 hex
// never issued>" to refresh fails without revoking the login (it counted as
// a replay and revoked it); a spent token presented again still revokes the
// whole login; a family stored before keys still refreshes.
func TestRefreshForgedSecretRevokesNothing(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	s, store := reviewService(t, key)
	ctx := context.Background()
	pair, err := s.Login(ctx, "alice", "pw-alice-123")
	if err != nil {
		t.Fatal(err)
	}
	sid := sidOf(t, pair.AccessToken)
	_, err = s.Refresh(ctx, sid+"."+strings.Repeat("0", 64))
	if !errors.Is(err, persistence.ErrRefreshInvalid) {
		t.Fatalf("forged refresh: %v, want %v", err, persistence.ErrRefreshInvalid)
	}
	if _, err := s.Authenticate(ctx, pair.AccessToken); err != nil {
		t.Fatalf("a forged refresh revoked the victim's access token: %v", err)
	}
	next, err := s.Refresh(ctx, pair.RefreshToken)
	if err != nil {
		t.Fatalf("a forged refresh revoked the victim's login: %v", err)
	}

	// Reuse detection holds: the spent token presented again revokes all.
	if _, err := s.Refresh(ctx, pair.RefreshToken); !errors.Is(err, persistence.ErrRefreshReused) {
		t.Fatalf("replay of a spent token: %v, want %v", err, persistence.ErrRefreshReused)
	}
	if _, err := s.Authenticate(ctx, next.AccessToken); !errors.Is(err, messages.ErrUnauthorized) {
		t.Fatalf("access token after a replay: %v", err)
	}
	if _, err := s.Refresh(ctx, next.RefreshToken); !errors.Is(err, messages.ErrUnauthorized) {
		t.Fatalf("current refresh token after a replay: %v", err)
	}

	// A login stored before family keys (a random secret, no key) keeps
	// working across the upgrade.
	u, err := store.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	fam := newID()
	var b [32]byte
	_, _ = rand.Read(b[:])
	legacy := fam + "." + hex.EncodeToString(b[:])
	if err := store.CreateRefresh(ctx, persistence.RefreshRecord{Family: fam, UserID: u.ID, Username: u.Username, Hash: hashToken(legacy)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	p, err := s.Refresh(ctx, legacy)
	if err != nil {
		t.Fatalf("refresh of a pre-key login: %v", err)
	}
	if _, err := s.Refresh(ctx, p.RefreshToken); err != nil {
		t.Fatalf("second refresh of a pre-key login: %v", err)
	}
}
