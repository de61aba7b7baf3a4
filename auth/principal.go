package auth

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// Perm is a set of permissions.
type Perm uint8

// Permissions. Admin implies every other.
const (
	PermRead Perm = 1 << iota
	PermWrite
	PermAdmin
)

// Op is what a request does to a topic: OpRead (subscribe, poll, SSE,
// history) or OpWrite (publish).
type Op = Perm

const (
	OpRead  = PermRead
	OpWrite = PermWrite
)

// ParsePerms reads permission names ("read", "write", "admin").
func ParsePerms(names []string) (Perm, error) {
	var p Perm
	for _, n := range names {
		switch strings.ToLower(strings.TrimSpace(n)) {
		case "read":
			p |= PermRead
		case "write":
			p |= PermWrite
		case "admin":
			p |= PermAdmin
		default:
			return 0, fmt.Errorf("unknown permission %q (want read, write or admin)", n)
		}
	}
	return p, nil
}

// Names lists p's permissions, in the order read, write, admin.
func (p Perm) Names() []string {
	out := []string{}
	for _, x := range []struct {
		p Perm
		n string
	}{{PermRead, "read"}, {PermWrite, "write"}, {PermAdmin, "admin"}} {
		if p&x.p != 0 {
			out = append(out, x.n)
		}
	}
	return out
}

// Has reports whether p includes every permission of q (admin includes all).
func (p Perm) Has(q Perm) bool { return p&PermAdmin != 0 || p&q == q }

// Kind is the kind of credential a principal presented.
type Kind uint8

const (
	KindUser   Kind = iota + 1 // a JWT (issued by the relay or an external issuer)
	KindAPIKey                 // an API key from the keys file
)

// Principal is an authenticated caller. It is immutable once returned.
type Principal struct {
	ID       string // the token's sub (a user id), or "apikey:<id>"
	Username string // empty for external tokens without one, and API keys
	Kind     Kind
	Perms    Perm
	// Topics, when not empty, limits the topics the credential may touch
	// (patterns such as "jobs.*", matched with path.Match).
	Topics []string
	// ExpiresAt is the token's expiry; zero for API keys.
	ExpiresAt time.Time
	// Family is the login (refresh-token family) an access token belongs to.
	Family string
	// RatePublish and RatePublishBurst override the publish limit when > 0
	// and that limit is on (RateConfig.Publish > 0; off, nobody is limited).
	RatePublish      float64
	RatePublishBurst int
}

// Identity is the rate-limiting key of p.
func (p *Principal) Identity() string {
	if p.Kind == KindAPIKey {
		return p.ID
	}
	return "user:" + p.ID
}

// IsAdmin reports whether p holds the admin permission.
func (p *Principal) IsAdmin() bool { return p != nil && p.Perms&PermAdmin != 0 }

// MatchesTopic reports whether topic is within p's topic patterns (always,
// when p has none).
func (p *Principal) MatchesTopic(topic string) bool {
	if len(p.Topics) == 0 {
		return true
	}
	for _, pat := range p.Topics {
		if ok, _ := path.Match(pat, topic); ok {
			return true
		}
	}
	return false
}

// validPatterns checks topic patterns.
func validPatterns(pats []string) error {
	for _, p := range pats {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			return fmt.Errorf("bad topic pattern %q", p)
		}
	}
	return nil
}
