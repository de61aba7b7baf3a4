package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// FileAPIKey is one entry of the API keys file (RELAY_API_KEYS_FILE), a
// JSON array:
//
//	[{"id": "ci-producer", "key_sha256": "<hex SHA-256 of the key>",
//	  "permissions": ["write"], "topics": ["jobs.*"]}]
//
// Only the hash is stored; make one with `printf %s "$KEY" | sha256sum`.
// Keys should be long random strings (32+ bytes), which is why a fast hash
// is enough. A presented key is hashed and compared with every entry in
// constant time.
type FileAPIKey struct {
	ID          string   `json:"id"`
	KeySHA256   string   `json:"key_sha256"`
	Permissions []string `json:"permissions"`
	Topics      []string `json:"topics"`
}

type apiKey struct {
	hash [sha256.Size]byte
	p    Principal
}

// LoadAPIKeysFile reads and checks an API keys file.
func LoadAPIKeysFile(path string) ([]apiKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("api keys file: %w", err)
	}
	var list []FileAPIKey
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("api keys file %s: %w", path, err)
	}
	out := make([]apiKey, 0, len(list))
	for i, k := range list {
		if k.ID == "" {
			return nil, fmt.Errorf("api keys file %s: entry %d has no id", path, i)
		}
		h, err := hex.DecodeString(strings.TrimSpace(k.KeySHA256))
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("api keys file %s: key %q: key_sha256 must be 64 hex digits", path, k.ID)
		}
		p, err := ParsePerms(k.Permissions)
		if err != nil {
			return nil, fmt.Errorf("api keys file %s: key %q: %w", path, k.ID, err)
		}
		if err := validPatterns(k.Topics); err != nil {
			return nil, fmt.Errorf("api keys file %s: key %q: %w", path, k.ID, err)
		}
		ak := apiKey{p: Principal{ID: "apikey:" + k.ID, Kind: KindAPIKey, Perms: p, Topics: k.Topics}}
		copy(ak.hash[:], h)
		out = append(out, ak)
	}
	return out, nil
}

// HashAPIKey returns the hex SHA-256 of key, as the keys file stores it.
func HashAPIKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// matchAPIKey compares key's hash with every entry in constant time.
func matchAPIKey(keys []apiKey, key string) *Principal {
	h := sha256.Sum256([]byte(key))
	var found *Principal
	for i := range keys {
		if subtle.ConstantTimeCompare(h[:], keys[i].hash[:]) == 1 {
			found = &keys[i].p
		}
	}
	return found
}
