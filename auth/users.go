package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// userView is a user as auth uses it: from the users file or the store.
type userView struct {
	ID, Username     string
	Hash             []byte
	Perms            Perm
	Topics           []string
	RatePublish      float64
	RatePublishBurst int
}

// FileUser is one entry of the users file (RELAY_USERS_FILE), a JSON array:
//
//	[{"username": "galaxy", "password_hash": "$2a$10$...", "permissions": ["read","write"],
//	  "topics": ["jobs.*"], "id": "optional-stable-id", "rate_publish": 100, "rate_publish_burst": 200}]
//
// password_hash is a bcrypt hash (e.g. `htpasswd -bnBC 10 "" pw | tr -d ':'`).
// id defaults to the username. The file is read at start, on every instance.
type FileUser struct {
	ID               string   `json:"id"`
	Username         string   `json:"username"`
	PasswordHash     string   `json:"password_hash"`
	Permissions      []string `json:"permissions"`
	Topics           []string `json:"topics"`
	RatePublish      float64  `json:"rate_publish"`
	RatePublishBurst int      `json:"rate_publish_burst"`
}

// LoadUsersFile reads and checks a users file.
func LoadUsersFile(path string) (map[string]userView, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	var list []FileUser
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	out := make(map[string]userView, len(list))
	for i, u := range list {
		if err := validUsername(u.Username); err != nil {
			return nil, fmt.Errorf("users file %s: entry %d: %w", path, i, err)
		}
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			return nil, fmt.Errorf("users file %s: user %q: password_hash is not a bcrypt hash", path, u.Username)
		}
		p, err := ParsePerms(u.Permissions)
		if err != nil {
			return nil, fmt.Errorf("users file %s: user %q: %w", path, u.Username, err)
		}
		if err := validPatterns(u.Topics); err != nil {
			return nil, fmt.Errorf("users file %s: user %q: %w", path, u.Username, err)
		}
		id := u.ID
		if id == "" {
			id = u.Username
		}
		out[u.Username] = userView{ID: id, Username: u.Username, Hash: []byte(u.PasswordHash), Perms: p,
			Topics: u.Topics, RatePublish: u.RatePublish, RatePublishBurst: u.RatePublishBurst}
	}
	return out, nil
}

// validUsername: 1..64 characters of [A-Za-z0-9._@-] (they become store keys).
func validUsername(n string) error {
	if len(n) == 0 || len(n) > 64 {
		return fmt.Errorf("%w: username must be 1..64 characters", messages.ErrInvalid)
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@') {
			return fmt.Errorf("%w: username may hold only letters, digits and . _ - @", messages.ErrInvalid)
		}
	}
	return nil
}

func viewOf(r persistence.UserRecord) userView {
	p, _ := ParsePerms(r.Permissions)
	return userView{ID: r.ID, Username: r.Username, Hash: []byte(r.PasswordHash), Perms: p, Topics: r.Topics,
		RatePublish: r.RatePublish, RatePublishBurst: r.RatePublishBurst}
}

// lookupUser finds a user in the users file, then the store.
func (s *Service) lookupUser(ctx context.Context, name string) (userView, error) {
	if u, ok := s.fileUsers[name]; ok {
		return u, nil
	}
	if validUsername(name) != nil {
		return userView{}, fmt.Errorf("user %q: %w", name, messages.ErrNotFound)
	}
	r, err := s.store.User(ctx, name)
	if err != nil {
		return userView{}, err
	}
	return viewOf(r), nil
}

// dummyCost is the bcrypt cost of the hash a login of an unknown user is
// checked against, so that it takes as long as a wrong password: the
// highest of the relay's own (BcryptCost) and the users file's, whose
// hashes may have any cost (htpasswd -bnBC 12). A lower one told which
// names the file holds (cost 12 against 10: four times as long).
func (s *Service) dummyCost() int {
	cost := s.cfg.BcryptCost
	for _, u := range s.fileUsers {
		if c, err := bcrypt.Cost(u.Hash); err == nil && c > cost {
			cost = c
		}
	}
	return cost
}

var errBadLogin = fmt.Errorf("%w: invalid username or password", messages.ErrUnauthorized)

// checkPassword returns the user when name and password match, else
// errBadLogin (the same for an unknown user and a wrong password).
func (s *Service) checkPassword(ctx context.Context, name, password string) (userView, error) {
	u, err := s.lookupUser(ctx, name)
	if err != nil && !errors.Is(err, messages.ErrNotFound) {
		return userView{}, err
	}
	hash := u.Hash
	if err != nil || len(hash) == 0 {
		hash = s.dummyHash()
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || err != nil || len(u.Hash) == 0 {
		return userView{}, errBadLogin
	}
	return u, nil
}

// NewUser is what an admin gives to create a user.
type NewUser struct {
	Username    string   `json:"username"`
	Password    string   `json:"password"`
	Permissions []string `json:"permissions"`
	Topics      []string `json:"topics"`
}

// UserInfo describes a user to clients.
type UserInfo struct {
	UserID      string   `json:"user_id"`
	Username    string   `json:"username"`
	Permissions []string `json:"permissions"`
	Topics      []string `json:"topics,omitempty"`
}

// CreateUser adds a user to the store (admin only). Errors: ErrForbidden,
// ErrInvalid, ErrConflict (the name is taken, in the file or the store).
func (s *Service) CreateUser(ctx context.Context, p *Principal, nu NewUser) (UserInfo, error) {
	if !p.IsAdmin() {
		return UserInfo{}, fmt.Errorf("%w: admin permission needed", messages.ErrForbidden)
	}
	if err := validUsername(nu.Username); err != nil {
		return UserInfo{}, err
	}
	if len(nu.Password) < 8 || len(nu.Password) > 72 {
		return UserInfo{}, fmt.Errorf("%w: password must be 8..72 bytes", messages.ErrInvalid)
	}
	if len(nu.Permissions) == 0 {
		nu.Permissions = []string{"read", "write"}
	}
	perms, err := ParsePerms(nu.Permissions)
	if err != nil {
		return UserInfo{}, fmt.Errorf("%w: %v", messages.ErrInvalid, err)
	}
	if err := validPatterns(nu.Topics); err != nil {
		return UserInfo{}, fmt.Errorf("%w: %v", messages.ErrInvalid, err)
	}
	if _, ok := s.fileUsers[nu.Username]; ok {
		return UserInfo{}, fmt.Errorf("user %q: %w", nu.Username, messages.ErrConflict)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(nu.Password), s.cfg.BcryptCost)
	if err != nil {
		return UserInfo{}, fmt.Errorf("%w: %v", messages.ErrInvalid, err)
	}
	rec := persistence.UserRecord{ID: newID(), Username: nu.Username, PasswordHash: string(hash),
		Permissions: perms.Names(), Topics: nu.Topics, CreatedAt: time.Now().UTC()}
	if err := s.store.CreateUser(ctx, rec); err != nil {
		return UserInfo{}, err
	}
	return UserInfo{UserID: rec.ID, Username: rec.Username, Permissions: rec.Permissions, Topics: rec.Topics}, nil
}

// bootstrapAdmin creates the admin user, or resets its password and
// permissions, keeping its id.
func (s *Service) bootstrapAdmin(ctx context.Context) error {
	name := s.cfg.AdminUsername
	if err := validUsername(name); err != nil {
		return fmt.Errorf("admin username: %w", err)
	}
	if s.cfg.AdminPassword == "" {
		return errors.New("RELAY_ADMIN_USERNAME needs RELAY_ADMIN_PASSWORD")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(s.cfg.AdminPassword), s.cfg.BcryptCost)
	if err != nil {
		return fmt.Errorf("admin password: %w", err)
	}
	rec, err := s.store.User(ctx, name)
	switch {
	case err == nil:
	case errors.Is(err, messages.ErrNotFound):
		rec = persistence.UserRecord{ID: newID(), Username: name, PasswordHash: string(hash),
			Permissions: []string{"read", "write", "admin"}, CreatedAt: time.Now().UTC()}
		if err = s.store.CreateUser(ctx, rec); err == nil {
			return nil
		}
		if !errors.Is(err, messages.ErrConflict) { // another instance won the race: update its record
			return fmt.Errorf("admin user: %w", err)
		}
		if rec, err = s.store.User(ctx, name); err != nil {
			return fmt.Errorf("admin user: %w", err)
		}
	default:
		return fmt.Errorf("admin user: %w", err)
	}
	rec.PasswordHash = string(hash)
	rec.Permissions = []string{"read", "write", "admin"}
	return s.store.PutUser(ctx, rec)
}

// newID returns 16 random bytes in hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
