package persistence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/pulsar-relay/relay/internal/valkeytest"
	"github.com/pulsar-relay/relay/messages"
)

// authStore is the method set auth.Store asks for (auth imports
// persistence, so the conformance suite names it here).
type authStore interface {
	User(ctx context.Context, username string) (UserRecord, error)
	CreateUser(ctx context.Context, u UserRecord) error
	PutUser(ctx context.Context, u UserRecord) error
	CreateRefresh(ctx context.Context, r RefreshRecord, ttl time.Duration) error
	RotateRefresh(ctx context.Context, family, oldHash, newHash string, ttl time.Duration) (RefreshRecord, error)
	RefreshFamily(ctx context.Context, family string) (RefreshRecord, error)
	RevokeRefresh(ctx context.Context, family string) error
	RevokeRefreshIfCurrent(ctx context.Context, family, hash string) (bool, error)
	RefreshRevoked(ctx context.Context, family string) (bool, error)
	CreateTopic(ctx context.Context, t TopicRecord, rules CreateRules) error
	Topic(ctx context.Context, name string) (TopicRecord, error)
	UpdateTopic(ctx context.Context, name string, fn func(*TopicRecord) error) (TopicRecord, error)
	DeleteTopic(ctx context.Context, name string) error
	Topics(ctx context.Context) ([]TopicRecord, error)
	VisibleTopics(ctx context.Context, user string) ([]TopicRecord, error)
	OwnedTopics(ctx context.Context, owner string) ([]string, error)
}

func TestMemoryAuthStoreConformance(t *testing.T) {
	ms := NewMemoryStore(Limits{})
	testAuthStore(t, NewMemoryAuthStore(ms), ms)
}

func TestValkeyAuthStoreConformance(t *testing.T) {
	srv := valkeytest.Start(t)
	vs, err := NewValkeyStore(context.Background(), ValkeyConfig{Addrs: []string{srv.Addr()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vs.Close() })
	testAuthStore(t, NewValkeyAuthStore(vs), vs)
}

func testAuthStore(t *testing.T, s authStore, msgs Store) {
	ctx := context.Background()
	t.Run("users", func(t *testing.T) {
		if _, err := s.User(ctx, "nobody"); !errors.Is(err, messages.ErrNotFound) {
			t.Fatalf("missing user: %v", err)
		}
		u := UserRecord{ID: "id1", Username: "ann", PasswordHash: "h", Permissions: []string{"read"}}
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateUser(ctx, u); !errors.Is(err, messages.ErrConflict) {
			t.Fatalf("second create: %v", err)
		}
		u.PasswordHash = "h2"
		if err := s.PutUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		got, err := s.User(ctx, "ann")
		if err != nil || got.ID != "id1" || got.PasswordHash != "h2" || len(got.Permissions) != 1 {
			t.Fatalf("user: %+v %v", got, err)
		}
	})
	t.Run("logins per user bounded", func(t *testing.T) {
		// A cap of 3 (MaxLoginsPerUser in production): past it the user's
		// oldest login never refreshed ends, else the least recently
		// refreshed.
		setMaxLogins(t, s, 3)
		// Family names sort in reverse order of creation, so an eviction
		// by name or by creation alone is told apart from one by use.
		family := func(user string, i int) string { return fmt.Sprintf("%s%028x", user[:4], 1000-i) }
		create := func(user string, i int, ttl time.Duration) {
			t.Helper()
			time.Sleep(2 * time.Millisecond) // each login its own millisecond
			if err := s.CreateRefresh(ctx, RefreshRecord{Family: family(user, i), UserID: "id-" + user, Username: user, Hash: "h"}, ttl); err != nil {
				t.Fatal(err)
			}
		}
		live := func(user string, i int) bool {
			t.Helper()
			_, err := s.RefreshFamily(ctx, family(user, i))
			if err != nil && !errors.Is(err, ErrRefreshInvalid) {
				t.Fatal(err)
			}
			return err == nil
		}
		create("bea0", 0, time.Minute)
		for i := range 3 {
			create("cafe", i, time.Minute)
		}
		if _, err := s.RotateRefresh(ctx, family("cafe", 0), "h", "h2", time.Minute); err != nil {
			t.Fatal(err)
		}
		create("cafe", 3, time.Minute) // ends login 1: login 0 was refreshed
		for i, want := range []bool{true, false, true, true} {
			if got := live("cafe", i); got != want {
				t.Errorf("login %d: live %v, want %v", i, got, want)
			}
		}
		if !live("bea0", 0) {
			t.Error("another user's login ended")
		}
		// Logins never refreshed go before refreshed ones, even when those
		// were used longer ago: e0 refreshed, then e1 and e2 made (never
		// refreshed); one more ends e1, not e0.
		create("e0e0", 0, time.Minute)
		if _, err := s.RotateRefresh(ctx, family("e0e0", 0), "h", "h2", time.Minute); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 3; i++ {
			create("e0e0", i, time.Minute)
		}
		for i, want := range []bool{true, false, true, true} {
			if got := live("e0e0", i); got != want {
				t.Errorf("never-refreshed-first, login %d: live %v, want %v", i, got, want)
			}
		}
		// Logins refreshed past their first ttl still count.
		for i := range 3 {
			create("dad0", i, 300*time.Millisecond)
			if _, err := s.RotateRefresh(ctx, family("dad0", i), "h", "h2", time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(400 * time.Millisecond) // past the ttl they were created with
		create("dad0", 3, time.Minute)
		n := 0
		for i := range 4 {
			if live("dad0", i) {
				n++
			}
		}
		if n != 3 {
			t.Errorf("%d live logins after one more past the first ttl, want 3", n)
		}
	})
	t.Run("refresh rotation and replay", func(t *testing.T) {
		fam := "0123456789abcdef0123456789abcdef"
		if err := s.CreateRefresh(ctx, RefreshRecord{Family: fam, UserID: "id1", Username: "ann", Hash: "h0"}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if rev, err := s.RefreshRevoked(ctx, fam); err != nil || rev {
			t.Fatalf("fresh family revoked: %v %v", rev, err)
		}
		rec, err := s.RotateRefresh(ctx, fam, "h0", "h1", time.Minute)
		if err != nil || rec.UserID != "id1" || rec.Username != "ann" {
			t.Fatalf("rotate: %+v %v", rec, err)
		}
		// Concurrent presentations of the same token: exactly one wins,
		// and the losers revoke the family.
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, reused := 0, 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.RotateRefresh(ctx, fam, "h1", "h2", time.Minute)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, ErrRefreshReused), errors.Is(err, ErrRefreshInvalid):
					reused++
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 || reused != 7 {
			t.Fatalf("%d wins, %d refused", wins, reused)
		}
		if rev, _ := s.RefreshRevoked(ctx, fam); !rev {
			t.Fatal("a replay did not revoke the family")
		}
		if _, err := s.RotateRefresh(ctx, fam, "h2", "h3", time.Minute); !errors.Is(err, ErrRefreshInvalid) {
			t.Fatalf("rotate of a revoked family: %v", err)
		}
		if _, err := s.RotateRefresh(ctx, "ffffffffffffffffffffffffffffffff", "x", "y", time.Minute); !errors.Is(err, ErrRefreshInvalid) {
			t.Fatalf("unknown family: %v", err)
		}
		if rev, _ := s.RefreshRevoked(ctx, "ffffffffffffffffffffffffffffffff"); !rev {
			t.Fatal("an unknown family counts as revoked")
		}
		fam2 := "fedcba9876543210fedcba9876543210"
		if err := s.CreateRefresh(ctx, RefreshRecord{Family: fam2, UserID: "id1", Username: "ann", Hash: "a"}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeRefresh(ctx, fam2); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RotateRefresh(ctx, fam2, "a", "b", time.Minute); !errors.Is(err, ErrRefreshInvalid) {
			t.Fatalf("rotate after revoke: %v", err)
		}
	})
	t.Run("refresh family and revoke if current", func(t *testing.T) {
		fam := "00112233445566778899aabbccddeeff"
		if err := s.CreateRefresh(ctx, RefreshRecord{Family: fam, UserID: "id1", Username: "ann", Hash: "c0", Key: "k0"}, time.Minute); err != nil {
			t.Fatal(err)
		}
		rec, err := s.RefreshFamily(ctx, fam)
		if err != nil || rec.Family != fam || rec.UserID != "id1" || rec.Username != "ann" || rec.Hash != "c0" || rec.Key != "k0" || rec.Revoked {
			t.Fatalf("family: %+v %v", rec, err)
		}
		if _, err := s.RotateRefresh(ctx, fam, "c0", "c1", time.Minute); err != nil {
			t.Fatal(err)
		}
		if rec, err := s.RefreshFamily(ctx, fam); err != nil || rec.Hash != "c1" || rec.Key != "k0" {
			t.Fatalf("family after a rotation (the key stays): %+v %v", rec, err)
		}
		// Neither a spent hash nor a made-up one revokes.
		for _, h := range []string{"c0", "forged", ""} {
			if ok, err := s.RevokeRefreshIfCurrent(ctx, fam, h); err != nil || ok {
				t.Fatalf("revoke with hash %q: %v %v, want nothing revoked", h, ok, err)
			}
		}
		if rev, _ := s.RefreshRevoked(ctx, fam); rev {
			t.Fatal("a wrong hash revoked the family")
		}
		// Concurrent revocations with the current hash: exactly one does it.
		var wg sync.WaitGroup
		var mu sync.Mutex
		done := 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := s.RevokeRefreshIfCurrent(ctx, fam, "c1")
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					done++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if done != 1 {
			t.Fatalf("%d revocations with the current hash, want 1", done)
		}
		if rev, _ := s.RefreshRevoked(ctx, fam); !rev {
			t.Fatal("the current hash did not revoke the family")
		}
		if _, err := s.RefreshFamily(ctx, fam); !errors.Is(err, ErrRefreshInvalid) {
			t.Fatalf("revoked family: %v", err)
		}
		if _, err := s.RotateRefresh(ctx, fam, "c1", "c2", time.Minute); !errors.Is(err, ErrRefreshInvalid) {
			t.Fatalf("rotate after revoke: %v", err)
		}
		unknown := "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
		if _, err := s.RefreshFamily(ctx, unknown); !errors.Is(err, ErrRefreshInvalid) {
			t.Fatalf("unknown family: %v", err)
		}
		if ok, err := s.RevokeRefreshIfCurrent(ctx, unknown, ""); err != nil || ok {
			t.Fatalf("revoke of an unknown family: %v %v", ok, err)
		}
		// A family stored before keys reads with Key "".
		old := "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"
		if err := s.CreateRefresh(ctx, RefreshRecord{Family: old, UserID: "id1", Username: "ann", Hash: "o"}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if rec, err := s.RefreshFamily(ctx, old); err != nil || rec.Key != "" || rec.Hash != "o" {
			t.Fatalf("family without a key: %+v %v", rec, err)
		}
		// An expired family is neither read nor revoked.
		exp := "abababababababababababababababab"
		// It is read once before it expires, so that its later absence is
		// the expiry and not a family that was never stored.
		const expTTL = time.Second
		created := time.Now()
		if err := s.CreateRefresh(ctx, RefreshRecord{Family: exp, UserID: "id1", Username: "ann", Hash: "e", Key: "k"}, expTTL); err != nil {
			t.Fatal(err)
		}
		rec, err = s.RefreshFamily(ctx, exp)
		if d := time.Since(created); err != nil && d >= expTTL {
			t.Fatalf("could not read the family before it expired (%s after creating it, ttl %s): %v", d, expTTL, err)
		}
		if err != nil || rec.Hash != "e" || rec.Key != "k" {
			t.Fatalf("family before it expires: %+v %v", rec, err)
		}
		eventually(t, 10*time.Second, func() string {
			if _, err := s.RefreshFamily(ctx, exp); !errors.Is(err, ErrRefreshInvalid) {
				return fmt.Sprintf("family %s after its ttl of %s: %v; want ErrRefreshInvalid", exp, expTTL, err)
			}
			return ""
		})
		if ok, err := s.RevokeRefreshIfCurrent(ctx, exp, "e"); err != nil || ok {
			t.Fatalf("revoke of an expired family: %v %v", ok, err)
		}
	})
	t.Run("topics", func(t *testing.T) {
		rec := TopicRecord{ID: "t1", Name: "owned.topic", OwnerID: "id1", CreatedAt: time.Now().UTC()}
		if err := s.CreateTopic(ctx, rec, CreateRules{}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateTopic(ctx, rec, CreateRules{}); !errors.Is(err, messages.ErrConflict) {
			t.Fatalf("second create: %v", err)
		}
		got, err := s.UpdateTopic(ctx, "owned.topic", func(r *TopicRecord) error {
			r.Description = "d"
			r.Grants = map[string]string{"id2": "read"}
			return nil
		})
		if err != nil || got.Description != "d" || got.Grants["id2"] != "read" {
			t.Fatalf("update: %+v %v", got, err)
		}
		if _, err := s.UpdateTopic(ctx, "missing.topic", func(*TopicRecord) error { return nil }); !errors.Is(err, messages.ErrNotFound) {
			t.Fatalf("update missing: %v", err)
		}
		all, err := s.Topics(ctx)
		if err != nil || len(all) != 1 || all[0].Name != "owned.topic" || all[0].Grants["id2"] != "read" {
			t.Fatalf("topics: %+v %v", all, err)
		}
		now := time.Now()
		first := []messages.Message{{Payload: []byte(`{}`), Timestamp: now}}
		if _, err := msgs.Append(ctx, "owned.topic", first); err != nil {
			t.Fatal(err)
		}
		if _, err := msgs.Append(ctx, "plain.topic", []messages.Message{{Payload: []byte(`{}`), Timestamp: now}}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteTopic(ctx, "plain.topic"); !errors.Is(err, messages.ErrNotFound) {
			t.Fatalf("delete of a topic nobody owns: %v, want not found", err)
		}
		if p, err := msgs.Range(ctx, "plain.topic", messages.ID{}, 10); err != nil || len(p.Messages) != 1 {
			t.Fatalf("a topic nobody owns lost its messages to a refused delete: %d %v", len(p.Messages), err)
		}
		// A topic holding messages stored while nobody owned it is not
		// created under Unused (a user's create), and is otherwise (an
		// admin's); an empty one is.
		claim := TopicRecord{ID: "t2", Name: "plain.topic", OwnerID: "id9", CreatedAt: time.Now().UTC()}
		if err := s.CreateTopic(ctx, TopicRecord{ID: "t0", Name: "id9.first", OwnerID: "id9"}, CreateRules{OwnedLimit: 1}); err != nil {
			t.Fatal(err)
		}
		// At the bound, the bound answers first in both stores (403).
		if err := s.CreateTopic(ctx, claim, CreateRules{Unused: true, OwnedLimit: 1}); !errors.Is(err, ErrOwnedLimit) {
			t.Fatalf("a create, Unused, of a topic holding messages, at the bound: %v; want ErrOwnedLimit", err)
		}
		if err := s.DeleteTopic(ctx, "id9.first"); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateTopic(ctx, claim, CreateRules{Unused: true, OwnedLimit: 10}); !errors.Is(err, messages.ErrConflict) {
			t.Fatalf("a create, Unused, of a topic holding messages: %v; want ErrConflict", err)
		}
		if owned, err := s.OwnedTopics(ctx, "id9"); err != nil || len(owned) != 0 {
			t.Fatalf("the refused create left %v (%v) in its owner's index", owned, err)
		}
		if _, err := s.Topic(ctx, "plain.topic"); !errors.Is(err, messages.ErrNotFound) {
			t.Fatalf("the refused create left a record: %v", err)
		}
		if err := s.CreateTopic(ctx, TopicRecord{ID: "t3", Name: "empty.topic", OwnerID: "id9"}, CreateRules{Unused: true}); err != nil {
			t.Fatalf("a create, Unused, of a topic with no messages: %v", err)
		}
		if err := s.CreateTopic(ctx, claim, CreateRules{}); err != nil {
			t.Fatalf("a create of a topic holding messages, not Unused: %v", err)
		}
		for _, n := range []string{"plain.topic", "empty.topic"} {
			if err := s.DeleteTopic(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.DeleteTopic(ctx, "owned.topic"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Topic(ctx, "owned.topic"); !errors.Is(err, messages.ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}
		if p, err := msgs.Range(ctx, "owned.topic", messages.ID{}, 10); err != nil || len(p.Messages) != 0 {
			t.Fatalf("messages after delete: %d %v", len(p.Messages), err)
		}
		if err := s.DeleteTopic(ctx, "owned.topic"); !errors.Is(err, messages.ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		// The topic's next incarnation continues its ids, even with the same
		// timestamp: a resume point from before names no new message.
		again := []messages.Message{{Payload: []byte(`{}`), Timestamp: now}}
		if _, err := msgs.Append(ctx, "owned.topic", again); err != nil {
			t.Fatal(err)
		}
		if !first[0].ID.Less(again[0].ID) {
			t.Fatalf("id after delete %s, not after the old incarnation's %s", again[0].ID, first[0].ID)
		}
		if p, err := msgs.Range(ctx, "owned.topic", first[0].ID, 10); err != nil || len(p.Messages) != 1 || p.Messages[0].ID != again[0].ID {
			t.Fatalf("Range after the old incarnation's id: %+v %v; want the new message", p, err)
		}
	})
	// Each owner's topics are indexed (OwnedTopics: what /auth/me lists
	// and RELAY_RATE_OWNED_TOPICS bounds), following creates and deletes;
	// owner "" (auth off) is not indexed.
	t.Run("topics indexed by owner", func(t *testing.T) {
		create := func(name, owner string) error {
			return s.CreateTopic(ctx, TopicRecord{ID: name, Name: name, OwnerID: owner, CreatedAt: time.Now().UTC()}, CreateRules{})
		}
		for i := range 30 {
			if err := create(fmt.Sprintf("idx.%04d", i), "idx-owner"); err != nil {
				t.Fatalf("create %d: %v", i, err)
			}
		}
		if err := create("other.one", "other-owner"); err != nil {
			t.Fatalf("another owner's create: %v", err)
		}
		if err := create("anon.one", ""); err != nil {
			t.Fatalf("an unowned-by-anyone create: %v", err)
		}
		owned, err := s.OwnedTopics(ctx, "idx-owner")
		if err != nil || len(owned) != 30 || owned[0] != "idx.0000" {
			t.Fatalf("OwnedTopics = %d names (%v), want 30 from idx.0000", len(owned), err)
		}
		if err := s.DeleteTopic(ctx, "idx.0000"); err != nil {
			t.Fatal(err)
		}
		if owned, err := s.OwnedTopics(ctx, "idx-owner"); err != nil || len(owned) != 29 || owned[0] != "idx.0001" {
			t.Fatalf("OwnedTopics after a delete = %d names (%v), want 29 from idx.0001", len(owned), err)
		}
		if owned, err := s.OwnedTopics(ctx, "other-owner"); err != nil || len(owned) != 1 || owned[0] != "other.one" {
			t.Fatalf("the other owner's topics: %v %v", owned, err)
		}
		if owned, err := s.OwnedTopics(ctx, "nobody"); err != nil || len(owned) != 0 {
			t.Fatalf("an owner of nothing: %v %v", owned, err)
		}
		if owned, err := s.OwnedTopics(ctx, ""); err != nil || len(owned) != 0 {
			t.Fatalf("owner \"\" indexed: %v %v", owned, err)
		}
	})
	// CreateTopic's ownedLimit bounds one owner's topics, atomically: 16
	// creates at once with room for 5 leave 5 (checked, then created in
	// separate steps, they all passed a count of 0). A topic owned already
	// is a conflict at the bound too, and a delete makes room.
	t.Run("owned topics bounded per owner", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make([]error, 16)
		for i := range errs {
			wg.Go(func() {
				name := fmt.Sprintf("cap.%02d", i)
				errs[i] = s.CreateTopic(ctx, TopicRecord{ID: name, Name: name, OwnerID: "capped", CreatedAt: time.Now().UTC()}, CreateRules{OwnedLimit: 5})
			})
		}
		wg.Wait()
		created := 0
		for i, err := range errs {
			switch {
			case err == nil:
				created++
			case !errors.Is(err, ErrOwnedLimit) || !errors.Is(err, messages.ErrForbidden):
				t.Fatalf("create %d: %v; want nil or ErrOwnedLimit", i, err)
			}
		}
		owned, err := s.OwnedTopics(ctx, "capped")
		if created != 5 || err != nil || len(owned) != 5 {
			t.Fatalf("%d creates succeeded and the owner holds %v (%v); want 5", created, owned, err)
		}
		if err := s.CreateTopic(ctx, TopicRecord{Name: owned[0], OwnerID: "capped"}, CreateRules{OwnedLimit: 5}); !errors.Is(err, messages.ErrConflict) {
			t.Fatalf("re-create of an owned topic at the bound: %v; want ErrConflict", err)
		}
		if err := s.CreateTopic(ctx, TopicRecord{Name: "other.one", OwnerID: "capped"}, CreateRules{OwnedLimit: 5}); !errors.Is(err, messages.ErrConflict) {
			t.Fatalf("create of another owner's topic at the bound: %v; want ErrConflict", err)
		}
		if err := s.DeleteTopic(ctx, owned[0]); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateTopic(ctx, TopicRecord{Name: "cap.after", OwnerID: "capped"}, CreateRules{OwnedLimit: 5}); err != nil {
			t.Fatalf("create after a delete made room: %v", err)
		}
		if err := s.CreateTopic(ctx, TopicRecord{Name: "cap.unbounded", OwnerID: "capped"}, CreateRules{}); err != nil {
			t.Fatalf("create with no bound: %v", err)
		}
	})
	// The bound holds under the races that passed it on Valkey: two
	// creates of one name by its owner at once (the loser gave back the
	// winner's place in the index), and /auth/me (OwnedTopics) read while
	// creates are in flight (it took their reservations, whose records
	// were not written yet, for stale names, and so freed their places).
	t.Run("owned bound holds under races", func(t *testing.T) {
		create := func(name, owner string, limit int) error {
			return s.CreateTopic(ctx, TopicRecord{ID: name, Name: name, OwnerID: owner, CreatedAt: time.Now().UTC()}, CreateRules{OwnedLimit: limit})
		}
		for i := range 100 {
			name := fmt.Sprintf("twice.%03d", i)
			var wg sync.WaitGroup
			for range 2 {
				wg.Go(func() { _ = create(name, "twice", 0) })
			}
			wg.Wait()
		}
		if owned, err := s.OwnedTopics(ctx, "twice"); err != nil || len(owned) != 100 {
			t.Fatalf("after 100 names created twice at once, the owner's index lists %d (%v); want 100", len(owned), err)
		}
		if err := create("twice.more", "twice", 100); !errors.Is(err, ErrOwnedLimit) {
			t.Fatalf("a create past the bound of 100: %v; want ErrOwnedLimit", err)
		}

		stop := make(chan struct{})
		var readers sync.WaitGroup
		for range 4 {
			readers.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
						_, _ = s.OwnedTopics(ctx, "raced")
					}
				}
			})
		}
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Go(func() { _ = create(fmt.Sprintf("raced.%03d", i), "raced", 4) })
		}
		wg.Wait()
		close(stop)
		readers.Wait()
		n := 0
		all, err := s.Topics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range all {
			if r.OwnerID == "raced" {
				n++
			}
		}
		if n != 4 {
			t.Fatalf("100 creates with room for 4, OwnedTopics read meanwhile: the owner holds %d", n)
		}
	})
	// A user's listing reads the topics it owns, is granted or that are
	// public, following grants, revokes, the public flag and deletes.
	t.Run("visible topics indexed", func(t *testing.T) {
		names := func(recs []TopicRecord, err error) string {
			if err != nil {
				return err.Error()
			}
			var out []string
			for _, r := range recs {
				out = append(out, r.Name)
			}
			return strings.Join(out, ",")
		}
		mk := func(name, owner string) {
			if err := s.CreateTopic(ctx, TopicRecord{ID: name, Name: name, OwnerID: owner, CreatedAt: time.Now().UTC()}, CreateRules{}); err != nil {
				t.Fatal(err)
			}
		}
		update := func(name string, fn func(*TopicRecord)) {
			if _, err := s.UpdateTopic(ctx, name, func(r *TopicRecord) error { fn(r); return nil }); err != nil {
				t.Fatal(err)
			}
		}
		mk("vis.own", "viewer")
		mk("vis.granted", "boss")
		mk("vis.public", "boss")
		mk("vis.hidden", "boss")
		update("vis.granted", func(r *TopicRecord) { r.Grants = map[string]string{"viewer": "read", "third": "write"} })
		update("vis.public", func(r *TopicRecord) { r.Public = true })
		update("vis.hidden", func(r *TopicRecord) { r.Description = "nobody else's" })
		if got := names(s.VisibleTopics(ctx, "viewer")); got != "vis.granted,vis.own,vis.public" {
			t.Fatalf("viewer sees %q", got)
		}
		if got := names(s.VisibleTopics(ctx, "third")); got != "vis.granted,vis.public" {
			t.Fatalf("third sees %q", got)
		}
		update("vis.granted", func(r *TopicRecord) { delete(r.Grants, "viewer") })
		update("vis.public", func(r *TopicRecord) { r.Public = false })
		update("vis.hidden", func(r *TopicRecord) { r.Public = true })
		if got := names(s.VisibleTopics(ctx, "viewer")); got != "vis.hidden,vis.own" {
			t.Fatalf("after the revoke and the public flags moved, viewer sees %q", got)
		}
		for _, n := range []string{"vis.granted", "vis.hidden"} {
			if err := s.DeleteTopic(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		if got := names(s.VisibleTopics(ctx, "third")); got != "" {
			t.Fatalf("after the deletes, third sees %q", got)
		}
		if got := names(s.VisibleTopics(ctx, "viewer")); got != "vis.own" {
			t.Fatalf("after the deletes, viewer sees %q", got)
		}
	})
}

// setMaxLogins lowers the store's MaxLoginsPerUser for t.
func setMaxLogins(t *testing.T, s authStore, n int) {
	t.Helper()
	switch v := s.(type) {
	case *MemoryAuthStore:
		old := v.maxLogins
		v.maxLogins = n
		t.Cleanup(func() { v.maxLogins = old })
	case *ValkeyAuthStore:
		old := v.maxLogins
		v.maxLogins = n
		t.Cleanup(func() { v.maxLogins = old })
	default:
		t.Fatalf("no login cap to set on %T", s)
	}
}

// Topics owned before the owner index existed (a Valkey written by an
// earlier relay: records and the topic index, no per-owner sets) are
// indexed once, by the first relay that needs the index: they count
// against their owner's bound and show in OwnedTopics.
func TestValkeyAuthStoreIndexesOlderOwnedTopics(t *testing.T) {
	srv := valkeytest.Start(t)
	vs, err := NewValkeyStore(context.Background(), ValkeyConfig{Addrs: []string{srv.Addr()}, Password: srv.Password()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vs.Close() })
	ctx := context.Background()
	old := NewValkeyAuthStore(vs)
	for i := range 3 {
		if err := old.CreateTopic(ctx, TopicRecord{ID: "x", Name: fmt.Sprintf("older.%d", i), OwnerID: "veteran", CreatedAt: time.Now().UTC()}, CreateRules{}); err != nil {
			t.Fatal(err)
		}
	}
	// Take the index away, as a relay of the earlier version left it.
	c, err := vs.conn()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Del().Key(ownedKey("veteran"), pendingKey("veteran"), ownedIndexedKey).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	// A grant and a public flag of the earlier version: records only.
	if _, err := old.UpdateTopic(ctx, "older.2", func(r *TopicRecord) error {
		r.Grants, r.Public = map[string]string{"guest": "read"}, true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Del().Key(grantedKey("guest"), publicIndexKey, grantsIndexedKey).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	fresh := NewValkeyAuthStore(vs) // a relay started on that Valkey
	for _, who := range []string{"guest", "passer-by"} {
		vis, err := fresh.VisibleTopics(ctx, who)
		if err != nil || len(vis) != 1 || vis[0].Name != "older.2" {
			t.Fatalf("%s's visible topics after the upgrade = %+v, %v; want older.2 (granted and public)", who, vis, err)
		}
	}
	got, err := fresh.OwnedTopics(ctx, "veteran")
	if err != nil || len(got) != 3 || got[0] != "older.0" {
		t.Fatalf("OwnedTopics after the upgrade = %v, %v; want the 3 older topics", got, err)
	}
	if n, err := c.Do(ctx, c.B().Scard().Key(ownedKey("veteran")).Build()).AsInt64(); err != nil || n != 3 {
		t.Fatalf("the owner's index holds %d (%v), want 3", n, err)
	}
	// A relay of the earlier version deletes a topic (its record only):
	// the index drops the stale name when it is next read.
	if err := c.Do(ctx, c.B().Del().Key(topicOwnerKey("older.1")).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	got, err = fresh.OwnedTopics(ctx, "veteran")
	if err != nil || len(got) != 2 || got[0] != "older.0" || got[1] != "older.2" {
		t.Fatalf("OwnedTopics after an earlier relay's delete = %v, %v; want older.0 and older.2", got, err)
	}
	if n, err := c.Do(ctx, c.B().Scard().Key(ownedKey("veteran")).Build()).AsInt64(); err != nil || n != 2 {
		t.Fatalf("the owner's index holds %d (%v) after the stale name was read, want 2", n, err)
	}
}

// The one-time owner index of an older Valkey reads every topic record
// under its own deadline, not the store's per-call timeout: with records
// too many to read within that, every create, /auth/me and count failed
// with 503 for good.
func TestValkeyOwnedIndexHasItsOwnDeadline(t *testing.T) {
	srv := valkeytest.Start(t)
	vs, err := NewValkeyStore(context.Background(), ValkeyConfig{Addrs: []string{srv.Addr()}, Password: srv.Password(), Timeout: 20 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vs.Close() })
	ctx := context.Background()
	c, err := vs.conn()
	if err != nil {
		t.Fatal(err)
	}
	// 400 records of 64 KiB, written as a relay from before the index left
	// them: records and the topic index, no per-owner sets.
	pad := strings.Repeat("d", 64<<10)
	var cmds valkey.Commands
	for i := range 400 {
		name := fmt.Sprintf("big.%03d", i)
		rec, _ := json.Marshal(TopicRecord{ID: name, Name: name, OwnerID: "heavy", Description: pad, CreatedAt: time.Now().UTC()})
		cmds = append(cmds, c.B().Set().Key(topicOwnerKey(name)).Value(string(rec)).Build(), c.B().Sadd().Key(topicIndexKey).Member(name).Build())
	}
	for _, res := range c.DoMulti(ctx, cmds...) {
		if err := res.Error(); err != nil {
			t.Fatal(err)
		}
	}
	// A create with room for 401 passes, and the owner's index then holds
	// the 400 and it (read directly: reading 400 such records through the
	// store would not fit its 20 ms either).
	as := NewValkeyAuthStore(vs)
	if err := as.CreateTopic(ctx, TopicRecord{Name: "light.0", OwnerID: "heavy"}, CreateRules{OwnedLimit: 401}); err != nil {
		t.Fatalf("create beside 400 older topics, room for 401: %v (the index not built within its own deadline?)", err)
	}
	if n, err := c.Do(ctx, c.B().Scard().Key(ownedKey("heavy")).Build()).AsInt64(); err != nil || n != 401 {
		t.Fatalf("the owner's index holds %d (%v), want 401", n, err)
	}
}

// At the bound, a create first takes names without a record out of the
// owner's index (a relay of an earlier version deleted the topic, or a
// create failed after reserving and its minute passed), instead of
// refusing until the owner next reads /auth/me.
func TestValkeyCreateAtTheBoundClearsDeletedNames(t *testing.T) {
	srv := valkeytest.Start(t)
	vs := openValkey(t, srv, ValkeyConfig{})
	as := NewValkeyAuthStore(vs)
	ctx := context.Background()
	for _, n := range []string{"kept.a", "gone.b"} {
		if err := as.CreateTopic(ctx, TopicRecord{ID: n, Name: n, OwnerID: "olga"}, CreateRules{OwnedLimit: 2}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := vs.conn()
	if err != nil {
		t.Fatal(err)
	}
	// An earlier relay's delete: the record only (and its creates note no
	// pending reservations).
	if err := c.Do(ctx, c.B().Del().Key(topicOwnerKey("gone.b"), pendingKey("olga")).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := as.CreateTopic(ctx, TopicRecord{ID: "new.c", Name: "new.c", OwnerID: "olga"}, CreateRules{OwnedLimit: 2}); err != nil {
		t.Fatalf("a create at the bound, one of the two names deleted: %v", err)
	}
	if err := as.CreateTopic(ctx, TopicRecord{ID: "new.d", Name: "new.d", OwnerID: "olga"}, CreateRules{OwnedLimit: 2}); !errors.Is(err, ErrOwnedLimit) {
		t.Fatalf("the next: %v; want ErrOwnedLimit", err)
	}
	// The reservations' key expires with its last reservation: owner ids
	// (an external token's sub) are unbounded, so a key each must not stay.
	if ttl, err := c.Do(ctx, c.B().Pttl().Key(pendingKey("olga")).Build()).AsInt64(); err != nil || ttl <= 0 {
		t.Fatalf("%s has ttl %d (%v), want one of at most a minute", pendingKey("olga"), ttl, err)
	}
}
