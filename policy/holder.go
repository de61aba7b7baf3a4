package policy

import (
	"sync/atomic"
	"time"
)

// Holder keeps the Set in force and where it came from. Replace and
// ReloadFile install a new Set only when the whole document is valid: on
// error the old Set stays. Safe for concurrent use; readers never block.
type Holder struct {
	cur atomic.Pointer[Loaded]
}

// Loaded is a Set with its origin.
type Loaded struct {
	Set      *Set
	Source   string    // a file path, "api", or "" for none
	LoadedAt time.Time // when it was installed
}

// Current is the Set in force (an empty Set before any load).
func (h *Holder) Current() Loaded {
	if l := h.cur.Load(); l != nil {
		return *l
	}
	return Loaded{Set: newSet()}
}

// Replace parses data and installs it; source names where it came from.
func (h *Holder) Replace(data []byte, format Format, source string, now time.Time) (Loaded, error) {
	set, err := Parse(data, format)
	if err != nil {
		return h.Current(), err
	}
	l := &Loaded{Set: set, Source: source, LoadedAt: now}
	h.cur.Store(l)
	return *l, nil
}

// ReloadFile loads path and installs it (SIGHUP, start-up).
func (h *Holder) ReloadFile(path string, now time.Time) (Loaded, error) {
	set, err := LoadFile(path)
	if err != nil {
		return h.Current(), err
	}
	l := &Loaded{Set: set, Source: path, LoadedAt: now}
	h.cur.Store(l)
	return *l, nil
}
