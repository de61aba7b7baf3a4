// Package auth decides who may do what: it verifies credentials (JWTs signed
// with HS256, RS256, ES256 or EdDSA, keys from a secret, PEM files or a JWKS
// URL; API keys; usernames and bcrypt passwords), issues access tokens and
// rotating refresh tokens, keeps topic ownership and grants, answers the
// authorization decision Allow(principal, op, topic), and rate-limits per
// identity.
//
// It knows no HTTP serving and does not import actors or gateway: the
// gateway authenticates a request with Service.Authenticate, asks
// Service.Allow per topic, and only then talks to the actors. What every
// relay instance must agree on lives in a Store (persistence.MemoryAuthStore
// or persistence.ValkeyAuthStore).
package auth
