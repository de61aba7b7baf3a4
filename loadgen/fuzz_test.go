package loadgen

import (
	"fmt"
	"testing"
)

// The fast scanners are built for frames that carry our own payloads; on
// arbitrary input they must not panic, and whatever they return is checked by
// the accounting (foreign or malformed), so the fuzz targets below check
// no-panic on noise and exactness on frames of the shape the servers send.

func FuzzParseRelayFrame(f *testing.F) {
	f.Add([]byte(`{"type":"message","message_id":"1-0","topic":"b-0","payload":{"seq":1,"sent_ns":2,"pub":0},"timestamp":"t","metadata":{}}`))
	f.Add([]byte(`{"type":"subscribed","topics":["b-0"]}`))
	f.Add([]byte(`{"type":"error","code":"X","message":"y"}`))
	f.Add([]byte(`{"type":"message","topic":"b-0","payload":{"seq":1e2,"sent_ns":2,"pub":0}}`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		_, _ = parseRelayFrame(frame)
	})
}

func FuzzParseCentrifugoLine(f *testing.F) {
	f.Add([]byte(`{"push":{"channel":"b-0","pub":{"data":{"seq":1,"sent_ns":2,"pub":0},"offset":3}}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"id":2,"error":{"code":103,"message":"permission denied"}}`))
	f.Add([]byte(`{"push":{"disconnect":{"code":3001,"reason":"x"}}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		_, _ = parseCentrifugoLine(line)
	})
}

// FuzzServerFrames: any payload we can send comes back exactly through both
// servers' frame shapes.
func FuzzServerFrames(f *testing.F) {
	f.Add(uint64(0), int64(0), 0, 0, 0)
	f.Add(uint64(1<<40), int64(1<<61), 1023, 99999, 17)
	f.Fuzz(func(t *testing.T, seq uint64, sent int64, pub, topic, pad int) {
		if sent < 0 || pub < 0 || pub > maxPublishers || topic < 0 || topic > maxTopics || pad < 0 || pad > 64 || seq >= 1e18 {
			return
		}
		p := payload{Seq: seq, SentNs: sent, Pub: pub}
		body := appendPayload(nil, p, pad)
		name := topicName("bench-1", topic)
		relay := fmt.Appendf(nil, `{"type":"message","message_id":"1700000000000-3","topic":%q,"payload":%s,"timestamp":"2026-01-01T00:00:00Z","metadata":{}}`, name, body)
		rf, err := parseRelayFrame(relay)
		if err != nil || rf.kind != relayMessage || rf.p != p || string(rf.topic) != name {
			t.Fatalf("relay frame %s: %+v, %v", relay, rf, err)
		}
		cf := fmt.Appendf(nil, `{"push":{"channel":%q,"pub":{"data":%s,"offset":7}}}`, name, body)
		cl, err := parseCentrifugoLine(cf)
		if err != nil || cl.kind != cfPub || cl.p != p || string(cl.channel) != name {
			t.Fatalf("centrifugo line %s: %+v, %v", cf, cl, err)
		}
		if i, ok := topicIndex("bench-1", rf.topic); !ok || i != topic {
			t.Fatalf("topic index of %s = %d, %v", rf.topic, i, ok)
		}
	})
}
