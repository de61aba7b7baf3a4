package loadgen

import (
	"errors"
	"strings"
	"testing"
)

func TestParseCentrifugoLine(t *testing.T) {
	tests := []struct {
		line    string
		kind    int
		id      uint64
		channel string
		p       payload
		replyOK bool
		text    string
		wantErr bool
	}{
		{line: `{}`, kind: cfPing},
		{line: `{"id":1,"connect":{"client":"abc","version":"6.9.1","ping":25,"pong":true}}`, kind: cfReply, id: 1, replyOK: true},
		{line: `{"id":2,"subscribe":{}}`, kind: cfReply, id: 2, replyOK: true},
		{line: `{"id":2,"error":{"code":103,"message":"permission denied"}}`, kind: cfReply, id: 2},
		{line: `{"push":{"channel":"b-0","pub":{"data":{"seq":4,"sent_ns":77,"pub":1},"offset":5}}}`, kind: cfPub, channel: "b-0", p: payload{4, 77, 1}},
		{line: `{"push": {"channel": "b-1", "pub": {"data": {"seq": 4.0, "sent_ns": 77, "pub": 1}}}}`, kind: cfPub, channel: "b-1", p: payload{4, 77, 1}},
		{line: `{"push":{"channel":"b-0","pub":{"data":{"seq":1.5e0,"sent_ns":7,"pub":0}}}}`, kind: cfPub, channel: "b-0", p: payload{1, 7, 0}},
		{line: `{"push":{"channel":"b-0","pub":{"data":{"hello":1}}}}`, wantErr: true},
		{line: `{"push":{"disconnect":{"code":3001,"reason":"shutdown"}}}`, kind: cfDisconnect, text: "3001 shutdown"},
		{line: `{"push":{"channel":"b-0","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}}`, kind: cfUnsubscribed, channel: "b-0", text: "2000 server unsubscribe"},
		{line: `{"push":{"channel":"b-0","join":{"info":{}}}}`, kind: cfOther},
		{line: `not json`, wantErr: true},
	}
	for _, tc := range tests {
		got, err := parseCentrifugoLine([]byte(tc.line))
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err = %v, want error %v", tc.line, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if got.kind != tc.kind || got.id != tc.id || string(got.channel) != tc.channel || got.p != tc.p || got.text != tc.text {
			t.Errorf("%s:\n got  kind %d id %d channel %q p %+v text %q", tc.line, got.kind, got.id, got.channel, got.p, got.text)
		}
		if got.kind == cfReply && (got.err == nil) != tc.replyOK {
			t.Errorf("%s: reply err = %v", tc.line, got.err)
		}
		if got.err != nil && !errors.Is(got.err, errCentrifugoReply) {
			t.Errorf("%s: reply err %v does not wrap errCentrifugoReply", tc.line, got.err)
		}
	}
}

func TestForEachLine(t *testing.T) {
	frame := "{\"push\":{\"channel\":\"b-0\",\"pub\":{\"data\":{\"seq\":0,\"sent_ns\":1,\"pub\":0}}}}\n{}\n\n  {\"id\":2,\"subscribe\":{}}\n"
	var kinds []int
	err := forEachLine([]byte(frame), func(line []byte) error {
		l, err := parseCentrifugoLine(line)
		kinds = append(kinds, l.kind)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{cfPub, cfPing, cfReply}; len(kinds) != 3 || kinds[0] != want[0] || kinds[1] != want[1] || kinds[2] != want[2] {
		t.Fatalf("kinds = %v, want %v", kinds, want)
	}
	stop := errors.New("stop")
	n := 0
	if err := forEachLine([]byte("{}\n{}\n{}"), func([]byte) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("forEachLine did not stop at the first error: n=%d err=%v", n, err)
	}
}

func TestParseRelayFrame(t *testing.T) {
	tests := []struct {
		frame   string
		kind    int
		topic   string
		p       payload
		errText string
		wantErr bool
	}{
		{frame: `{"type":"message","message_id":"1700000000000-0","topic":"b-3","payload":{"seq":9,"sent_ns":10,"pub":2},"timestamp":"2026-01-01T00:00:00Z","metadata":{}}`,
			kind: relayMessage, topic: "b-3", p: payload{9, 10, 2}},
		{frame: `{"type": "message", "topic": "b-3", "payload": {"seq": 9.0, "sent_ns": 1e1, "pub": 2}}`,
			kind: relayMessage, topic: "b-3", p: payload{9, 10, 2}},
		{frame: `{"type":"subscribed","topics":["b-3"],"session_id":"s","timestamp":"t"}`, kind: relaySubscribed},
		{frame: `{"type":"error","code":"SUBSCRIPTION_ERROR","message":"bad topic"}`, kind: relayError, errText: "SUBSCRIPTION_ERROR: bad topic"},
		{frame: `{"type":"pong","timestamp":"t"}`, kind: relayOther},
		{frame: `{"type":"message","topic":"b-3","payload":{"x":1}}`, wantErr: true},
		{frame: `{"type":"message"`, wantErr: true},
	}
	for _, tc := range tests {
		got, err := parseRelayFrame([]byte(tc.frame))
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err = %v, want error %v", tc.frame, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if got.kind != tc.kind || string(got.topic) != tc.topic || got.p != tc.p || got.errText != tc.errText {
			t.Errorf("%s:\n got kind %d topic %q p %+v err %q", tc.frame, got.kind, got.topic, got.p, got.errText)
		}
	}
}

func TestPublishBodies(t *testing.T) {
	p := appendPayload(nil, payload{Seq: 1, SentNs: 2, Pub: 3}, 0)
	r := string((&relayDriver{}).appendPublishBody(nil, "b-0", p))
	if r != `{"topic":"b-0","payload":{"seq":1,"sent_ns":2,"pub":3}}` {
		t.Errorf("relay body = %s", r)
	}
	c := string((&centrifugoDriver{}).appendPublishBody(nil, "b-0", p))
	if c != `{"channel":"b-0","data":{"seq":1,"sent_ns":2,"pub":3}}` {
		t.Errorf("centrifugo body = %s", c)
	}
	if strings.Contains(r, "\n") || strings.Contains(c, "\n") {
		t.Error("bodies must be single-line JSON")
	}
}

// TestFastPathsDoNotAllocate: publications in the servers' own compact forms
// must take the scanning path; the full decode costs 20x more client CPU,
// which would compete with the server under test and skew the comparison.
func TestFastPathsDoNotAllocate(t *testing.T) {
	relay := []byte(`{"type":"message","message_id":"1700000000000-1","topic":"b-1-0","payload":{"seq":1,"sent_ns":2,"pub":3},"timestamp":"t","metadata":{}}`)
	relayTopicLast := []byte(`{"type":"message","payload":{"seq":1,"sent_ns":2,"pub":3},"message_id":"1-1","topic":"b-1-0"}`)
	cf := []byte(`{"push":{"channel":"b-1-0","pub":{"data":{"seq":1,"sent_ns":2,"pub":3},"offset":13}}}`)
	for name, fn := range map[string]func(){
		"relay":            func() { mustRelay(t, relay) },
		"relay topic last": func() { mustRelay(t, relayTopicLast) },
		"centrifugo": func() {
			l, err := parseCentrifugoLine(cf)
			if err != nil || l.kind != cfPub || string(l.channel) != "b-1-0" || l.p != (payload{1, 2, 3}) {
				t.Fatalf("centrifugo: %+v, %v", l, err)
			}
		},
	} {
		if a := testing.AllocsPerRun(100, fn); a != 0 {
			t.Errorf("%s: %.0f allocations per frame; want the allocation-free fast path", name, a)
		}
	}
}

func mustRelay(t *testing.T, frame []byte) {
	f, err := parseRelayFrame(frame)
	if err != nil || f.kind != relayMessage || string(f.topic) != "b-1-0" || f.p != (payload{1, 2, 3}) {
		t.Fatalf("relay %s: %+v, %v", frame, f, err)
	}
}
