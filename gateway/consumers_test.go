package gateway

import (
	"errors"
	"strings"
	"testing"

	"github.com/pulsar-relay/relay/messages"
)

func TestSSEIDRoundTrip(t *testing.T) {
	pos := []ssePos{
		{topic: "jobs.42", id: messages.ID{Ms: 1795744358690, Seq: 0}, epoch: epochTag("e1")},
		{topic: "alerts", id: messages.ID{Ms: 1795744350000, Seq: 3}},
	}
	id := string(appendSSEID(nil, pos))
	if id != "v1;jobs.42=1795744358690-0."+epochTag("e1")+";alerts=1795744350000-3" {
		t.Fatalf("id %q", id)
	}
	got, err := parseSSEID(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pos {
		if got[p.topic] != p {
			t.Errorf("%s: got %+v, want %+v", p.topic, got[p.topic], p)
		}
	}
	if len(epochTag("x")) != 8 || epochTag("") != "" || epochTag("a") == epochTag("b") {
		t.Error("epoch tags")
	}
}

func TestParseSSEID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want int // entries
	}{
		{"", true, 0},
		{"v1", true, 0},
		{"12-3", true, 1}, // a bare message id: every topic
		{"v1;a=1-2", true, 1},
		{"v1;a=1-2.deadbeef;b=0-0", true, 2},
		{"v1;a b=1-2", false, 0},
		{"v1;a=x", false, 0},
		{"v1;a", false, 0},
		{"v2;a=1-2", false, 0},
		{"garbage", false, 0},
	} {
		got, err := parseSSEID(tc.in)
		if (err == nil) != tc.ok || len(got) != tc.want {
			t.Errorf("parseSSEID(%q) = %v, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, messages.ErrInvalid) {
			t.Errorf("parseSSEID(%q): %v does not wrap ErrInvalid", tc.in, err)
		}
	}
}

func FuzzParseSSEID(f *testing.F) {
	for _, s := range []string{"", "v1;a=1-2.deadbeef;b=0-0", "5-1", "v1;;", "v1;a=1-2-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseSSEID(s)
		if err != nil {
			return
		}
		var pos []ssePos
		for topic, p := range got {
			if topic == "" {
				continue
			}
			if messages.ValidateTopic(topic) != nil {
				t.Fatalf("accepted topic %q", topic)
			}
			pos = append(pos, p)
		}
		again, err := parseSSEID(string(appendSSEID(nil, pos)))
		if err != nil || len(again) != len(pos) {
			t.Fatalf("re-encoded id does not parse: %v", err)
		}
	})
}

func TestDecodePoll(t *testing.T) {
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`{"topics":["a"]}`, true},
		{`{"topics":["a","a","b"],"since":{"a":"1-0"},"timeout":1}`, true},
		{`{"topics":["a"],"timeout":60}`, true},
		{`{"topics":["a"],"timeout":0.5}`, false},
		{`{"topics":["a"],"timeout":61}`, false},
		{`{"topics":[]}`, false},
		{`{"topics":["` + strings.Repeat("t,", 0) + `a"],"since":{"b":"1-0"}}`, false},
		{`{"topics":["a"],"since":{"a":"nope"}}`, false},
		{`{"topics":"a"}`, false},
		{`[]`, false},
		{`{"topics":["a b"]}`, false},
	} {
		req, err := decodePoll([]byte(tc.body))
		if (err == nil) != tc.ok {
			t.Errorf("decodePoll(%s): %v", tc.body, err)
			continue
		}
		if err != nil && !errors.Is(err, messages.ErrInvalid) {
			t.Errorf("decodePoll(%s): %v does not wrap ErrInvalid", tc.body, err)
		}
		if err == nil && (req.timeout <= 0 || len(req.Topics) == 0) {
			t.Errorf("decodePoll(%s) = %+v", tc.body, req)
		}
	}
	many := `{"topics":["` + strings.Repeat(`t","`, 20) + `t"]}`
	if _, err := decodePoll([]byte(many)); err != nil {
		t.Errorf("21 copies of one topic are one topic: %v", err)
	}
}

func TestIdempotencyKeyAndHash(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"k", true}, {strings.Repeat("k", 255), true}, {"with space ~!", true},
		{"", false}, {strings.Repeat("k", 256), false}, {"tab\t", false}, {"é", false}, {"\x7f", false},
	} {
		if _, err := validIdempotencyKey(tc.key); (err == nil) != tc.ok {
			t.Errorf("key %q: %v", tc.key, err)
		}
	}
	a, _ := messages.DecodePublish([]byte(`{"topic":"t","payload":{"x":1},"metadata":{"b":"2","a":"1"}}`))
	b, _ := messages.DecodePublish([]byte(`{ "metadata":{"a":"1","b":"2"}, "payload":{ "x": 1 }, "topic":"t" }`))
	c, _ := messages.DecodePublish([]byte(`{"topic":"t","payload":{"x":2}}`))
	if publishHash(a) != publishHash(b) || publishHash(a) == publishHash(c) {
		t.Error("publishHash: the same request must hash alike, another differently")
	}
	if bulkItemKey("k", 3) != "k#3" {
		t.Error("bulk item key")
	}
}

func TestFrameTopicAndID(t *testing.T) {
	m := messages.Message{ID: messages.ID{Ms: 5, Seq: 1}, Topic: "a.b", Payload: []byte(`{"topic":"x"}`)}
	frame := m.AppendFrame(nil)
	topic, id, ok := frameTopicAndID(frame)
	if !ok || string(topic) != "a.b" || string(id) != "5-1" {
		t.Fatalf("got %q %q %v", topic, id, ok)
	}
	if got := string(appendStoredForm(nil, frame)); got != string(m.AppendJSON(nil)) {
		t.Fatalf("stored form %s, want %s", got, m.AppendJSON(nil))
	}
	if _, _, ok := frameTopicAndID([]byte(`{"type":"message",}`)); ok {
		t.Fatal("accepted a truncated frame")
	}
}
