package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

var errForbidden = fmt.Errorf("%w: not allowed on this topic", messages.ErrForbidden)

// Allow is the authorization decision: may p do op on topic? A nil p (auth
// off) may do everything, and so may an admin. Otherwise p needs op's
// permission, the topic must be within p's topic patterns, and the topic
// must be owned by p, granted to p (a write grant includes read), public
// (for reads), or not owned at all.
//
// The error wraps messages.ErrForbidden, with the same text whether or not
// the topic exists, or messages.ErrUnavailable when the store cannot say who
// owns it. Owner records are cached for up to CacheTTL.
func (s *Service) Allow(ctx context.Context, p *Principal, op Op, topic string) error {
	if p == nil || p.IsAdmin() {
		return nil
	}
	if !p.Perms.Has(op) || !p.MatchesTopic(topic) {
		return errForbidden
	}
	rec, err := s.topicRecord(ctx, topic)
	if err != nil {
		return err
	}
	if rec == nil || mayUse(p, op, rec) {
		return nil
	}
	return errForbidden
}

// mayUse: owner, grantee or (reads) public.
func mayUse(p *Principal, op Op, t *persistence.TopicRecord) bool {
	if t.OwnerID == p.ID {
		return true
	}
	switch t.Grants[p.ID] {
	case "write":
		return true
	case "read":
		if op == OpRead {
			return true
		}
	}
	return op == OpRead && t.Public
}

// mayManage: may p change or delete the owned topic t? The owner (or an
// admin) may, but only through a credential that may write the topic: a
// read-only key or one limited to other topic patterns of the owner's does
// not get the owner's rights (as CreateTopic and Allow refuse it too).
func mayManage(p *Principal, t *persistence.TopicRecord) bool {
	if p == nil || p.IsAdmin() {
		return true
	}
	return t.OwnerID == p.ID && p.Perms.Has(PermWrite) && p.MatchesTopic(t.Name)
}

// topicRecord returns the owner record of topic (nil when not owned),
// cached for up to CacheTTL.
func (s *Service) topicRecord(ctx context.Context, topic string) (*persistence.TopicRecord, error) {
	now := time.Now()
	s.topicMu.Lock()
	c, ok := s.topics[topic]
	s.topicMu.Unlock()
	if ok && now.Before(c.until) {
		return c.rec, nil
	}
	t, err := s.store.Topic(ctx, topic)
	var rec *persistence.TopicRecord
	switch {
	case err == nil:
		rec = &t
	case errors.Is(err, messages.ErrNotFound):
	default:
		return nil, err
	}
	s.topicMu.Lock()
	if len(s.topics) >= maxCachedTopics {
		clear(s.topics)
	}
	s.topics[topic] = cachedTopic{rec: rec, until: now.Add(s.cfg.CacheTTL)}
	s.topicMu.Unlock()
	return rec, nil
}

func (s *Service) forgetTopic(topic string) {
	s.topicMu.Lock()
	delete(s.topics, topic)
	s.topicMu.Unlock()
}

// Topic is a topic as the REST API shows it.
type Topic struct {
	TopicID     string            `json:"topic_id"`
	TopicName   string            `json:"topic_name"`
	OwnerID     string            `json:"owner_id"`
	CreatedAt   string            `json:"created_at"`
	Description string            `json:"description"`
	Public      bool              `json:"public"`
	Grants      map[string]string `json:"grants,omitempty"` // shown to the owner and admins only
}

func (s *Service) view(p *Principal, t persistence.TopicRecord) Topic {
	v := Topic{TopicID: t.ID, TopicName: t.Name, OwnerID: t.OwnerID, CreatedAt: messages.FormatTime(t.CreatedAt),
		Description: t.Description, Public: t.Public}
	if p == nil || p.IsAdmin() || p.ID == t.OwnerID {
		v.Grants = t.Grants
	}
	return v
}

// CreateTopic makes p the owner of topic. Errors: ErrInvalid (name),
// ErrForbidden (p may not write it, or owns RELAY_RATE_OWNED_TOPICS),
// ErrConflict (owned already; or, p not an admin, holding messages stored
// while nobody owned it).
func (s *Service) CreateTopic(ctx context.Context, p *Principal, topic, description string) (Topic, error) {
	if err := messages.ValidateTopic(topic); err != nil {
		return Topic{}, err
	}
	if len(description) > 1024 {
		return Topic{}, fmt.Errorf("%w: description over 1024 bytes", messages.ErrInvalid)
	}
	if p != nil && !p.IsAdmin() && (!p.Perms.Has(PermWrite) || !p.MatchesTopic(topic)) {
		return Topic{}, errForbidden
	}
	owner := ""
	if p != nil {
		owner = p.ID
	}
	// A user may not own a topic others have published to while nobody
	// owned it (it could then refuse them and delete what they stored);
	// an admin may, and a user is bound to RELAY_RATE_OWNED_TOPICS.
	var rules persistence.CreateRules
	if p != nil && !p.IsAdmin() {
		rules = persistence.CreateRules{OwnedLimit: s.cfg.Rates.OwnedTopics, Unused: true}
	}
	rec := persistence.TopicRecord{ID: newID(), Name: topic, OwnerID: owner, Description: description, CreatedAt: time.Now().UTC()}
	if err := s.store.CreateTopic(ctx, rec, rules); errors.Is(err, persistence.ErrOwnedLimit) {
		return Topic{}, fmt.Errorf("%w: you own %d topics, the most one user may (RELAY_RATE_OWNED_TOPICS); delete one first", messages.ErrForbidden, rules.OwnedLimit)
	} else if err != nil {
		return Topic{}, err
	}
	s.forgetTopic(topic)
	return s.view(p, rec), nil
}

// GetTopic returns an owned topic p may read. A topic p may not read is
// ErrForbidden whether or not it exists; one p may read that has no owner
// is ErrNotFound.
func (s *Service) GetTopic(ctx context.Context, p *Principal, topic string) (Topic, error) {
	if err := messages.ValidateTopic(topic); err != nil {
		return Topic{}, err
	}
	if err := s.Allow(ctx, p, OpRead, topic); err != nil {
		// Its owner reads the record through any credential that may
		// manage the topic, also one without read: a publish-only service
		// user verifying the topic it created (pulsar-relay-client's
		// create-or-verify compares owner_id after a 409). Its messages
		// stay unreadable to it.
		if errors.Is(err, messages.ErrForbidden) {
			if t, terr := s.store.Topic(ctx, topic); terr == nil && mayManage(p, &t) {
				return s.view(p, t), nil
			}
		}
		return Topic{}, err
	}
	t, err := s.store.Topic(ctx, topic)
	if err != nil {
		return Topic{}, err
	}
	return s.view(p, t), nil
}

// ListTopics returns the owned topics p may read, by name. An admin's (or,
// auth off, anyone's) listing reads every owned topic; a user's only those
// it owns, is granted or that are public (the store's indexes), so one
// user's listing costs what it may see.
func (s *Service) ListTopics(ctx context.Context, p *Principal) ([]Topic, error) {
	out := []Topic{}
	var all []persistence.TopicRecord
	var err error
	switch {
	case p == nil || p.IsAdmin():
		all, err = s.store.Topics(ctx)
	case p.Perms.Has(PermRead):
		all, err = s.store.VisibleTopics(ctx, p.ID)
	default:
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, t := range all {
		if p == nil || p.IsAdmin() || (p.Perms.Has(PermRead) && p.MatchesTopic(t.Name) && mayUse(p, OpRead, &t)) {
			out = append(out, s.view(p, t))
		}
	}
	return out, nil
}

// TopicUpdate is the body of PUT /api/v1/topics/{topic}; nil fields stay.
type TopicUpdate struct {
	Description *string `json:"description"`
	Public      *bool   `json:"public"`
}

// UpdateTopic changes an owned topic's description or public flag (owner
// or admin, see mayManage; anyone else gets ErrForbidden, whether or not it
// exists).
func (s *Service) UpdateTopic(ctx context.Context, p *Principal, topic string, u TopicUpdate) (Topic, error) {
	if u.Description != nil && len(*u.Description) > 1024 {
		return Topic{}, fmt.Errorf("%w: description over 1024 bytes", messages.ErrInvalid)
	}
	return s.modify(ctx, p, topic, func(t *persistence.TopicRecord) error {
		if u.Description != nil {
			t.Description = *u.Description
		}
		if u.Public != nil {
			t.Public = *u.Public
		}
		return nil
	})
}

// Grant gives user (an id) read or write on topic; permission "" or "none"
// takes the grant away. Owner or admin only (mayManage).
func (s *Service) Grant(ctx context.Context, p *Principal, topic, user, permission string) (Topic, error) {
	switch permission {
	case "read", "write", "", "none":
	default:
		return Topic{}, fmt.Errorf("%w: permission must be read, write or none", messages.ErrInvalid)
	}
	revoke := permission == "" || permission == "none"
	if user == "" {
		return Topic{}, fmt.Errorf("%w: a grant needs a user", messages.ErrInvalid)
	}
	if err := validGrantee(user); err != nil && !revoke { // a grant stored before the rule can still go
		return Topic{}, err
	}
	return s.modify(ctx, p, topic, func(t *persistence.TopicRecord) error {
		if revoke {
			delete(t.Grants, user)
			return nil
		}
		if t.Grants == nil {
			t.Grants = map[string]string{}
		}
		if len(t.Grants) >= 1000 {
			return fmt.Errorf("%w: at most 1000 grants per topic", messages.ErrInvalid)
		}
		t.Grants[user] = permission
		return nil
	})
}

// maxGranteeLen bounds a grant's user id. An id is a users-file or store
// user's, or the subject of an external JWT (which need not exist here),
// so it is not held to usernames' characters; but it is a key of a topic
// record that every read of the record returns, so its length is bounded.
const maxGranteeLen = 256

// validGrantee checks a grant's user id: at most maxGranteeLen bytes of
// UTF-8 with no control characters.
func validGrantee(user string) error {
	if len(user) > maxGranteeLen || !utf8.ValidString(user) || strings.ContainsFunc(user, unicode.IsControl) {
		return fmt.Errorf("%w: a grant's user id is 1..%d bytes of UTF-8 without control characters", messages.ErrInvalid, maxGranteeLen)
	}
	return nil
}

// ResolveUser returns the id of a username (users file or store), or
// ErrNotFound.
func (s *Service) ResolveUser(ctx context.Context, username string) (string, error) {
	u, err := s.lookupUser(ctx, username)
	if err != nil {
		return "", err
	}
	return u.ID, nil
}

func (s *Service) modify(ctx context.Context, p *Principal, topic string, fn func(*persistence.TopicRecord) error) (Topic, error) {
	if err := messages.ValidateTopic(topic); err != nil {
		return Topic{}, err
	}
	t, err := s.store.UpdateTopic(ctx, topic, func(t *persistence.TopicRecord) error {
		if !mayManage(p, t) {
			return errForbidden
		}
		return fn(t)
	})
	s.forgetTopic(topic)
	if errors.Is(err, messages.ErrNotFound) && p != nil && !p.IsAdmin() {
		return Topic{}, errForbidden // a 403 never says whether the topic exists
	}
	if err != nil {
		return Topic{}, err
	}
	return s.view(p, t), nil
}

// DeleteTopic removes an owned topic and its stored messages (owner or
// admin, see mayManage; anyone else gets ErrForbidden, whether or not it
// exists).
func (s *Service) DeleteTopic(ctx context.Context, p *Principal, topic string) error {
	if err := messages.ValidateTopic(topic); err != nil {
		return err
	}
	if p != nil && !p.IsAdmin() {
		t, err := s.store.Topic(ctx, topic)
		if errors.Is(err, messages.ErrNotFound) || (err == nil && !mayManage(p, &t)) {
			return errForbidden
		}
		if err != nil {
			return err
		}
	}
	err := s.store.DeleteTopic(ctx, topic)
	s.forgetTopic(topic)
	return err
}
