package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/policy"
)

// fakeAdmin serves the admin routes' shapes (policy/admin.go) from a
// policy.Holder, as the relay is meant to, until the relay serves them
// itself; it wants "Authorization: Bearer admin-token".
type fakeAdmin struct {
	holder policy.Holder
	puts   atomic.Int64
	base   policy.Policy
}

func (f *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	if r.Header.Get("Authorization") != "Bearer admin-token" {
		reply(401, messages.ErrorBody{Error: "UNAUTHORIZED", Message: "a token is required", RequestID: "r"})
		return
	}
	view := func(l policy.Loaded) policy.SetView {
		return policy.SetView{Source: l.Source, LoadedAt: l.LoadedAt.UTC().Format(time.RFC3339), Base: f.base, Policies: l.Set}
	}
	switch {
	case r.Method == "GET" && r.URL.Path == "/api/v1/admin/topics":
		reply(200, policy.TopicsView{Topics: []policy.TopicView{
			{Topic: "jobs.b", Subscribers: map[string]int{"websocket": 2, "sse": 1}, PublishesPerSec: 12.5, LastID: "5-0",
				Policy: f.holder.Current().Set.Resolve("jobs.b", f.base)},
			{Topic: "alpha", Subscribers: map[string]int{}, Policy: f.holder.Current().Set.Resolve("alpha", f.base)},
		}})
	case r.Method == "GET" && r.URL.Path == "/api/v1/admin/policies":
		if t := r.URL.Query().Get("topic"); t != "" {
			set := f.holder.Current().Set
			var matched []string
			for _, rule := range set.Match(t) {
				matched = append(matched, rule.Pattern)
			}
			reply(200, policy.TopicPolicyView{Topic: t, Matched: matched, Policy: set.Resolve(t, f.base)})
			return
		}
		reply(200, view(f.holder.Current()))
	case r.Method == "PUT" && r.URL.Path == "/api/v1/admin/policies":
		f.puts.Add(1)
		body, _ := io.ReadAll(r.Body)
		l, err := f.holder.Replace(body, policy.FormatOf(r.Header.Get("Content-Type")), "api", time.Now())
		if err != nil {
			reply(400, messages.ErrorBody{Error: "INVALID_REQUEST", Message: err.Error(), RequestID: "r"})
			return
		}
		reply(200, view(l))
	default:
		reply(404, messages.ErrorBody{Error: "NOT_FOUND", Message: "no such route"})
	}
}

func adminEnv(k string) (string, bool) {
	if k == "RELAY_TOKEN" {
		return "admin-token", true
	}
	return "", false
}

func runAdmin(t *testing.T, cmd func(cliIO) int) (int, string, string) {
	t.Helper()
	var out, errOut syncBuffer
	code := cmd(cliIO{stdout: &out, stderr: &errOut, env: adminEnv})
	return code, out.String(), errOut.String()
}

// TestCLIPoliciesAndTopics drives `relay policies` and `relay topics`
// against the admin shapes: a file is checked locally before it is sent
// (a bad one never reaches the relay), applied with its content type and
// the token, and the effective policy of a topic reads back.
func TestCLIPoliciesAndTopics(t *testing.T) {
	fake := &fakeAdmin{base: policy.Policy{}}
	mailbox, queue := 10000, 4096
	fake.base.MailboxSize, fake.base.ConnectionQueueSize = &mailbox, &queue
	url := newTestServer(t, fake)
	dir := t.TempDir()
	good := filepath.Join(dir, "p.yaml")
	_ = os.WriteFile(good, []byte("topics:\n  jobs.*:\n    mailbox_size: 50\n    slow_consumer: drop-oldest\n"), 0o600)
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte("{\"topics\": {\n  \"jobs.*\": {\"mailbox_size\": \"big\"}}}"), 0o600)
	ctx := t.Context()

	code, out, errOut := runAdmin(t, func(io cliIO) int { return policiesCmd(ctx, []string{"--url", url, "--apply", good}, io) })
	if code != 0 {
		t.Fatalf("apply: exit %d %s", code, errOut)
	}
	var sv policy.SetView
	if err := json.Unmarshal([]byte(out), &sv); err != nil || sv.Source != "api" || sv.Policies.Len() != 1 {
		t.Fatalf("apply output %v: %s", err, out)
	}

	code, _, errOut = runAdmin(t, func(io cliIO) int { return policiesCmd(ctx, []string{"--url", url, "--apply", bad}, io) })
	if code != 2 || !strings.Contains(errOut, "line 2") || !strings.Contains(errOut, "mailbox_size") || fake.puts.Load() != 1 {
		t.Fatalf("bad file: exit %d, %d PUTs, stderr %q", code, fake.puts.Load(), errOut)
	}
	code, out, _ = runAdmin(t, func(io cliIO) int { return policiesCmd(ctx, []string{"--check", good}, io) })
	if code != 0 || !strings.Contains(out, "1 rules, valid") {
		t.Fatalf("check: %d %q", code, out)
	}

	code, out, errOut = runAdmin(t, func(io cliIO) int { return policiesCmd(ctx, []string{"--url", url, "--topic", "jobs.a"}, io) })
	var tv policy.TopicPolicyView
	if code != 0 || json.Unmarshal([]byte(out), &tv) != nil || *tv.Policy.MailboxSize != 50 ||
		*tv.Policy.ConnectionQueueSize != 4096 || *tv.Policy.SlowConsumer != policy.DropOldest || strings.Join(tv.Matched, ",") != "jobs.*" {
		t.Fatalf("topic view: exit %d %s %s", code, out, errOut)
	}

	code, out, _ = runAdmin(t, func(io cliIO) int { return topicsCmd(ctx, []string{"--url", url}, io) })
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var first policy.TopicView
	if code != 0 || len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &first) != nil || first.Topic != "alpha" {
		t.Fatalf("topics (piped: JSON lines, sorted): exit %d %q", code, out)
	}
	code, out, _ = runAdmin(t, func(io cliIO) int { return topicsCmd(ctx, []string{"--url", url, "--output", "table"}, io) })
	if code != 0 || !strings.Contains(out, "TOPIC") || !regexpMatch(`jobs\.b\s+3 \(sse 1, websocket 2\)\s+12\.5\s+0\.0\s+5-0\s+0\s+50\s+4096\s+drop-oldest`, out) {
		t.Fatalf("table: %q", out)
	}

	var o, e syncBuffer
	code = topicsCmd(ctx, []string{"--url", url}, cliIO{stdout: &o, stderr: &e, env: noEnv})
	if code != 1 || !strings.Contains(e.String(), "401 UNAUTHORIZED") {
		t.Fatalf("no token: exit %d %q", code, e.String())
	}
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }
