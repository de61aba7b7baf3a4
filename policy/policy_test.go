package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

func ptr[T any](v T) *T { return &v }

// base is a complete process-wide policy, as cmd/relay would build it.
func base() Policy {
	return Policy{
		Retention: ptr(24 * time.Hour), MaxMessages: ptr(1000000), HotRetention: ptr(600 * time.Second),
		MailboxSize: ptr(10000), MaxBatch: ptr(512), ConnectionQueueSize: ptr(4096),
		ConnectionQueueBytes: ptr(16 << 20), SlowConsumer: ptr(Disconnect),
		SupervisorMaxRestarts: ptr(10), SupervisorWindow: ptr(10 * time.Second),
		SupervisorBackoff: ptr(100 * time.Millisecond), AnonymousRead: ptr(true),
	}
}

const sample = `# per-topic policies
version: 1
topics:
  "*":
    anonymous_read: false
    mailbox_size: 5000
  jobs.*:
    connection_queue_size: 64
    slow_consumer: drop-oldest
    retention: 1h
  jobs.urgent.*:
    mailbox_size: 200
    supervisor_backoff: 250ms
  jobs.urgent.db:
    max_batch: 1
    hot_retention: 30
`

func with(m, over map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

func mustParse(t *testing.T, doc string, f Format) *Set {
	t.Helper()
	s, err := Parse([]byte(doc), f)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return s
}

func TestResolveMostSpecificWinsPerField(t *testing.T) {
	s := mustParse(t, sample, YAML)
	star := map[string]string{"anonymous_read": "false", "mailbox_size": "5000"}
	jobs := with(star, map[string]string{"connection_queue_size": "64", "slow_consumer": `"drop-oldest"`, "retention": `"1h0m0s"`})
	urgent := with(jobs, map[string]string{"mailbox_size": "200", "supervisor_backoff": `"250ms"`})
	db := with(urgent, map[string]string{"max_batch": "1", "hot_retention": `"30s"`})
	cases := []struct {
		topic   string
		matched []string
		want    map[string]string // field -> JSON value; others from base
	}{
		{"other", []string{"*"}, star},
		{"jobs", []string{"*"}, star}, // "jobs.*" needs the dot
		{"jobs.", []string{"jobs.*", "*"}, jobs},
		{"jobs.a", []string{"jobs.*", "*"}, jobs},
		{"jobs.urgent.x", []string{"jobs.urgent.*", "jobs.*", "*"}, urgent},
		{"jobs.urgent.db", []string{"jobs.urgent.db", "jobs.urgent.*", "jobs.*", "*"}, db},
		{"jobs.urgent.dbx", []string{"jobs.urgent.*", "jobs.*", "*"}, urgent},
		{"xjobs.a", []string{"*"}, star},
	}
	for _, c := range cases {
		t.Run(c.topic, func(t *testing.T) {
			var got []string
			for _, r := range s.Match(c.topic) {
				got = append(got, r.Pattern)
			}
			if strings.Join(got, " ") != strings.Join(c.matched, " ") {
				t.Errorf("matched %v, want %v", got, c.matched)
			}
			p := s.Resolve(c.topic, base())
			for _, name := range FieldNames() {
				want, ok := c.want[name]
				if !ok {
					want = base().Value(name)
				}
				if got := p.Value(name); got != want {
					t.Errorf("%s = %s, want %s", name, got, want)
				}
			}
		})
	}
}

func TestResolveDoesNotShareMemory(t *testing.T) {
	s := mustParse(t, sample, YAML)
	b := base()
	p := s.Resolve("jobs.a", b)
	*p.MailboxSize = 1
	*p.MaxBatch = 1
	if q := s.Resolve("jobs.a", b); *q.MailboxSize != 5000 || *b.MaxBatch != 512 {
		t.Fatalf("Resolve shares pointers: mailbox %d, base max batch %d", *q.MailboxSize, *b.MaxBatch)
	}
}

func TestNilAndEmptySets(t *testing.T) {
	var nilSet *Set
	if p := nilSet.Resolve("a", base()); !p.Equal(base()) {
		t.Fatalf("nil set changed base: %v", p)
	}
	for _, doc := range []string{"", "# nothing\n", "topics:\n", "{}", `{"topics":null}`, "---\n"} {
		s, err := Parse([]byte(doc), Auto)
		if err != nil || s.Len() != 0 {
			t.Errorf("%q: %v rules, err %v; want an empty set", doc, s.Len(), err)
		}
	}
}

// TestParseJSONMatchesYAML: the same document in both syntaxes gives the
// same set, and MarshalJSON round-trips.
func TestParseJSONMatchesYAML(t *testing.T) {
	y := mustParse(t, sample, Auto)
	js, _ := y.MarshalJSON()
	j := mustParse(t, string(js), Auto)
	js2, _ := j.MarshalJSON()
	if string(js) != string(js2) {
		t.Fatalf("round trip differs:\n%s\n%s", js, js2)
	}
	if !strings.HasPrefix(string(js), `{"version":1,"topics":{"jobs.urgent.db":{"hot_retention":"30s","max_batch":1}`) {
		t.Fatalf("document form: %s", js)
	}
	var p Policy
	if err := p.UnmarshalJSON([]byte(`{"mailbox_size": 7, "slow_consumer": "drop-oldest", "retention": null}`)); err != nil || *p.MailboxSize != 7 || p.Retention != nil {
		t.Fatalf("Policy.UnmarshalJSON: %v %v", p, err)
	}
}

func TestParseRefusesWithLineAndField(t *testing.T) {
	cases := []struct {
		name, doc string
		format    Format
		line      int
		field     string // the field or pattern named
		msg       string
	}{
		{"yaml unknown field", "topics:\n  jobs.*:\n    mailbox: 5\n", YAML, 3, "mailbox", "unknown field"},
		{"yaml out of range", "topics:\n  jobs.*:\n    mailbox_size: 0\n", YAML, 3, "mailbox_size", "1..1073741824"},
		{"yaml string for int", "topics:\n  a:\n    max_batch: \"5\"\n", YAML, 3, "max_batch", "want an integer"},
		{"yaml bad duration", "topics:\n  a:\n\n    retention: forever\n", YAML, 4, "retention", "duration"},
		{"yaml negative duration", "topics:\n  a:\n    supervisor_window: -5s\n", YAML, 3, "supervisor_window", "positive"},
		{"yaml zero seconds", "topics:\n  a:\n    hot_retention: 0\n", YAML, 3, "hot_retention", "positive"},
		{"yaml bad policy", "topics:\n  a:\n    slow_consumer: drop-newest\n", YAML, 3, "slow_consumer", "drop-oldest"},
		{"yaml yes is not a bool", "topics:\n  a:\n    anonymous_read: yes\n", YAML, 3, "anonymous_read", "true or false"},
		{"yaml bad pattern", "topics:\n  ok: {}\n  \"*.jobs\":\n    max_batch: 1\n", YAML, 3, "*.jobs", "may only end"},
		{"yaml bad topic char", "topics:\n  \"jobs/a\": {}\n", YAML, 2, "jobs/a", "[A-Za-z0-9._-]"},
		{"yaml duplicate pattern", "topics:\n  a: {}\n  a: {}\n", YAML, 3, "", "already defined"},
		{"yaml list value", "topics:\n  a:\n    max_batch: [1, 2]\n", YAML, 3, "max_batch", "single value"},
		{"yaml rule not a map", "topics:\n  a: 5\n", YAML, 2, "a", "mapping of policy fields"},
		{"yaml unknown top key", "topic:\n  a: {}\n", YAML, 1, "topic", "unknown key"},
		{"yaml bad version", "version: 2\ntopics: {}\n", YAML, 1, "version", "want 1"},
		{"yaml syntax", "topics:\n  a:\n    max_batch: 1\n    bad: [\n", YAML, -1, "", ""},
		{"yaml merge key", "x: &b {max_batch: 1}\n", YAML, 1, "x", "unknown key"},
		{"json unknown field", "{\n  \"topics\": {\n    \"jobs.*\": {\n      \"mailbox\": 5\n    }\n  }\n}\n", JSON, 4, "mailbox", "unknown field"},
		{"json out of range", "{\"topics\": {\n\"a\": {\"connection_queue_bytes\": 10}}}", JSON, 2, "connection_queue_bytes", "1024.."},
		{"json float", "{\"topics\": {\"a\":\n {\"max_batch\":\n 1.5}}}", JSON, 3, "max_batch", "1.5"},
		{"json duplicate field", "{\"topics\": {\"a\": {\"max_batch\": 1,\n \"max_batch\": 2}}}", JSON, 2, "max_batch", "twice"},
		{"json duplicate pattern", "{\"topics\": {\"a\": {},\n\n \"a\": {}}}", JSON, 3, "", "already defined on line 1"},
		{"json syntax", "{\"topics\": {\"a\": {\"max_batch\": 1,,\n}}}", JSON, 1, "", "invalid character"},
		{"json truncated", "{\"topics\": {\"a\":\n", JSON, 2, "", "unexpected end"},
		{"json trailing", "{}\n{}", JSON, 2, "", "after the document"},
		{"json array", "[]", JSON, 1, "", "must be an object"},
		{"json object value", "{\"topics\": {\"a\": {\"retention\": {\"age\": 5}}}}", JSON, 1, "retention", "single value"},
		{"json bool string", "{\"topics\": {\"a\": {\"anonymous_read\": \"true\"}}}", JSON, 1, "anonymous_read", "true or false"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Parse([]byte(c.doc), c.format)
			if err == nil {
				t.Fatalf("accepted: %v", s.Rules())
			}
			if s != nil {
				t.Fatal("a refused document returned a set")
			}
			if !errors.Is(err, messages.ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("no FieldError in %v", err)
			}
			if fe.Line != c.line && !(c.line == -1 && fe.Line > 0) {
				t.Errorf("line %d, want %d (%v)", fe.Line, c.line, err)
			}
			if c.field != "" && fe.Field != c.field && fe.Pattern != c.field {
				t.Errorf("names field %q pattern %q, want %q (%v)", fe.Field, fe.Pattern, c.field, err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("message %q lacks %q", err, c.msg)
			}
			if !strings.Contains(err.Error(), "line ") {
				t.Errorf("message %q does not name the line", err)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte("topics:\n  a:\n    max_batch: 0\n  b:\n    mailbox_size: x\n    nope: 1\n"), YAML)
	msg := err.Error()
	for _, want := range []string{"line 3: topics.\"a\".max_batch", "line 5: topics.\"b\".mailbox_size", "line 6: topics.\"b\".nope"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
}

func TestAcceptedValues(t *testing.T) {
	s := mustParse(t, `topics:
  a:
    retention: 90        # seconds
    hot_retention: 2m
    supervisor_window: "45s"
    max_messages: 1099511627776
    connection_queue_bytes: 1024
    anonymous_read: TRUE
    slow_consumer: disconnect
    supervisor_max_restarts: ~
`, YAML)
	p := s.Resolve("a", Policy{})
	if *p.Retention != 90*time.Second || *p.HotRetention != 2*time.Minute || *p.SupervisorWindow != 45*time.Second ||
		*p.MaxMessages != 1<<40 || *p.ConnectionQueueBytes != 1024 || !*p.AnonymousRead || *p.SlowConsumer != Disconnect ||
		p.SupervisorMaxRestarts != nil {
		t.Fatalf("got %v", p)
	}
}

func TestFormatOf(t *testing.T) {
	for in, want := range map[string]Format{
		"p.json": JSON, "P.YAML": YAML, "p.yml": YAML, "policies": Auto,
		"application/json; charset=utf-8": JSON, "application/yaml": YAML, "text/x-yaml": YAML, "text/plain": Auto,
	} {
		if got := FormatOf(in); got != want {
			t.Errorf("FormatOf(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestHolderKeepsOldSetOnBadFile: a refused reload leaves the set in force.
func TestHolderKeepsOldSetOnBadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policies.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var h Holder
	if h.Current().Set.Len() != 0 {
		t.Fatal("a fresh holder has rules")
	}
	write("topics:\n  jobs.*:\n    mailbox_size: 10\n")
	if _, err := h.ReloadFile(path, time.Now()); err != nil {
		t.Fatal(err)
	}
	write("topics:\n  jobs.*:\n    mailbox_size: -1\n")
	_, err := h.ReloadFile(path, time.Now())
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("bad file: %v", err)
	}
	cur := h.Current()
	if got := cur.Set.Resolve("jobs.a", base()); *got.MailboxSize != 10 || cur.Source != path {
		t.Fatalf("old set lost: %v from %q", got, cur.Source)
	}
	if _, err := h.Replace([]byte(`{"topics":{"jobs.*":{"mailbox_size":20}}}`), JSON, "api", time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := h.Current().Set.Resolve("jobs.a", base()); *got.MailboxSize != 20 {
		t.Fatalf("replace not applied: %v", got)
	}
	if _, err := h.ReloadFile(filepath.Join(dir, "missing.yaml"), time.Now()); err == nil || errors.Is(err, messages.ErrInvalid) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestNewSet(t *testing.T) {
	s, err := NewSet([]Rule{{Pattern: "a*", Policy: Policy{MaxBatch: ptr(3)}}, {Pattern: "*"}})
	if err != nil || *s.Resolve("ab", base()).MaxBatch != 3 {
		t.Fatalf("%v %v", s, err)
	}
	if _, err := NewSet([]Rule{{Pattern: "a*"}, {Pattern: "a*"}}); err == nil {
		t.Fatal("duplicate accepted")
	}
}

// A JSON document saved with a byte-order mark parses like one without.
func TestParseAcceptsAByteOrderMark(t *testing.T) {
	for _, f := range []Format{Auto, JSON} {
		s, err := Parse([]byte("\ufeff{\"topics\":{\"a\":{\"max_batch\":5}}}"), f)
		if err != nil || *s.Resolve("a", Policy{}).MaxBatch != 5 {
			t.Fatalf("format %v: %v", f, err)
		}
	}
}

// Aliases of one large mapping are refused before they are expanded: a
// 48 KB document of 2,000 aliases of a 2,000-field mapping took 10 s and
// 3.5 GB; a rule can hold only as many fields as there are.
func TestParseRefusesAliasBlowUp(t *testing.T) {
	const n = 2000
	var b strings.Builder
	b.WriteString("topics:\n  a: &x\n")
	for i := range n {
		fmt.Fprintf(&b, "    f%d: 1\n", i)
	}
	for i := range n {
		fmt.Fprintf(&b, "  b%d: *x\n", i)
	}
	_, err := Parse([]byte(b.String()), YAML)
	if !errors.Is(err, messages.ErrInvalid) || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("err = %v", err)
	}
}

// AnonymousReads says whether any rule lets anonymous readers in (a
// WebSocket upgrade without a credential checks it on every request, so it
// is known when the set is built, not found by copying every rule).
func TestAnonymousReads(t *testing.T) {
	var nilSet *Set
	for _, c := range []struct {
		doc  string
		want bool
	}{
		{`{"topics":{"a":{"max_batch":5}}}`, false},
		{`{"topics":{"a":{"anonymous_read":false}}}`, false},
		{`{"topics":{"a":{"max_batch":5},"public.*":{"anonymous_read":true}}}`, true},
		{`{"topics":{"*":{"anonymous_read":true}}}`, true},
	} {
		s, err := Parse([]byte(c.doc), JSON)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.AnonymousReads(); got != c.want {
			t.Errorf("%s: AnonymousReads = %v, want %v", c.doc, got, c.want)
		}
	}
	if nilSet.AnonymousReads() {
		t.Error("a nil set allows anonymous reads")
	}
	s, _ := NewSet([]Rule{{Pattern: "x", Policy: Policy{AnonymousRead: ptr(true)}}})
	if !s.AnonymousReads() {
		t.Error("NewSet lost anonymous_read")
	}
}
