package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pulsar-relay/relay/messages"
)

// Rule is one pattern of a Set and the fields it sets. Line is where the
// pattern was written (0 when the Set was not parsed from a document).
type Rule struct {
	Pattern string
	Line    int
	Policy  Policy
}

type patternKind int

const (
	patternExact patternKind = iota
	patternPrefix
	patternAny
)

// checkPattern accepts a topic name, a prefix ending in one "*" ("jobs.*"),
// or "*".
func checkPattern(p string) (patternKind, error) {
	if p == "*" {
		return patternAny, nil
	}
	if p == "" {
		return 0, errors.New("empty topic pattern")
	}
	prefix, isPrefix := strings.CutSuffix(p, "*")
	if strings.Contains(prefix, "*") {
		return 0, errors.New(`"*" may only end a pattern ("jobs.*") or stand alone ("*")`)
	}
	if err := messages.ValidateTopic(prefix); err != nil {
		return 0, fmt.Errorf("not a topic name or pattern: %s", strings.TrimPrefix(err.Error(), messages.ErrInvalid.Error()+": "))
	}
	if isPrefix {
		return patternPrefix, nil
	}
	return patternExact, nil
}

// Set is a validated, immutable set of rules. The zero Set and a nil *Set
// have no rules. Safe for concurrent use.
type Set struct {
	exact    map[string]*Rule
	prefixes []*Rule // longest prefix first
	any      *Rule
	anonRead bool // some rule sets anonymous_read true (see AnonymousReads)
}

func newSet() *Set { return &Set{exact: map[string]*Rule{}} }

// NewSet validates rules as Parse would (patterns, duplicates) and returns
// their Set. Errors wrap messages.ErrInvalid.
func NewSet(rules []Rule) (*Set, error) {
	s := newSet()
	var errs []*FieldError
	for _, r := range rules {
		kind, err := checkPattern(r.Pattern)
		if err != nil {
			errs = append(errs, &FieldError{Line: r.Line, Pattern: r.Pattern, Msg: err.Error()})
			continue
		}
		if s.has(r.Pattern) {
			errs = append(errs, &FieldError{Line: r.Line, Pattern: r.Pattern, Msg: "pattern given twice"})
			continue
		}
		s.add(r, kind)
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	s.sort()
	return s, nil
}

func (s *Set) has(pattern string) bool {
	if pattern == "*" {
		return s.any != nil
	}
	if _, ok := s.exact[pattern]; ok {
		return true
	}
	for _, r := range s.prefixes {
		if r.Pattern == pattern {
			return true
		}
	}
	return false
}

func (s *Set) add(r Rule, kind patternKind) {
	r.Policy = r.Policy.clone()
	if a := r.Policy.AnonymousRead; a != nil && *a {
		s.anonRead = true
	}
	switch kind {
	case patternAny:
		s.any = &r
	case patternPrefix:
		s.prefixes = append(s.prefixes, &r)
	default:
		s.exact[r.Pattern] = &r
	}
}

func (s *Set) sort() {
	sort.SliceStable(s.prefixes, func(i, j int) bool {
		a, b := s.prefixes[i].Pattern, s.prefixes[j].Pattern
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return a < b
	})
}

// Match returns the rules that apply to topic, most specific first: the
// exact rule, then prefix rules from the longest prefix to the shortest,
// then "*".
func (s *Set) Match(topic string) []Rule {
	if s == nil {
		return nil
	}
	var out []Rule
	if r, ok := s.exact[topic]; ok {
		out = append(out, *r)
	}
	for _, r := range s.prefixes {
		if strings.HasPrefix(topic, strings.TrimSuffix(r.Pattern, "*")) {
			out = append(out, *r)
		}
	}
	if s.any != nil {
		out = append(out, *s.any)
	}
	return out
}

// Resolve is topic's effective policy: for each field, the value of the most
// specific matching rule that sets it (exact > longest prefix > "*"), else
// base's. With a complete base (every field set, from the process-wide
// settings) the result is complete. A nil Set returns base.
func (s *Set) Resolve(topic string, base Policy) Policy {
	matched := s.Match(topic)
	out := base.clone()
	for i := len(matched) - 1; i >= 0; i-- {
		out = out.Merge(matched[i].Policy)
	}
	return out
}

// Rules returns every rule, most specific first: exact names (sorted), then
// prefixes from longest to shortest, then "*".
func (s *Set) Rules() []Rule {
	if s == nil {
		return nil
	}
	names := make([]string, 0, len(s.exact))
	for n := range s.exact {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]Rule, 0, len(s.exact)+len(s.prefixes)+1)
	for _, n := range names {
		out = append(out, *s.exact[n])
	}
	for _, r := range s.prefixes {
		out = append(out, *r)
	}
	if s.any != nil {
		out = append(out, *s.any)
	}
	return out
}

// AnonymousReads reports whether some rule allows anonymous reads: a
// WebSocket upgrade without a credential is let in only then. Known when
// the set is built, so the check costs nothing per request however many
// rules there are (Rules copies and sorts them all).
func (s *Set) AnonymousReads() bool { return s != nil && s.anonRead }

// Len is the number of rules.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	n := len(s.exact) + len(s.prefixes)
	if s.any != nil {
		n++
	}
	return n
}

// MarshalJSON writes the Set as a policy document,
// {"version":1,"topics":{pattern: policy, ...}}, rules most specific first;
// Parse reads it back.
func (s *Set) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"version":1,"topics":{`)
	for i, r := range s.Rules() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(r.Pattern))
		b.WriteByte(':')
		p, _ := r.Policy.MarshalJSON()
		b.Write(p)
	}
	b.WriteString("}}")
	return b.Bytes(), nil
}

// UnmarshalJSON parses a policy document in JSON (see Parse).
func (s *Set) UnmarshalJSON(data []byte) error {
	parsed, err := Parse(data, JSON)
	if err != nil {
		return err
	}
	*s = *parsed
	return nil
}

var _ json.Marshaler = (*Set)(nil)
