package persistence

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// NoticeInlineMax is the most payload and metadata bytes an append batch may
// carry for its notice to include the messages themselves (16 KiB). A larger
// batch is announced without them (Notice.Messages nil): its readers fetch
// it from the stream. Keeping notices small keeps pub/sub cheap for every
// relay, also for those without a subscriber on the topic's shard.
const NoticeInlineMax = 16 << 10

// Notice announces an append to a topic, to every relay subscribed to the
// topic's channel (topic:{<topic>}:live), published in the same script call
// as the XADDs. Pub/sub is at most once: a lost notice is found by the next
// one (Prev does not continue what the reader delivered) or by a Tips check.
type Notice struct {
	Topic string
	// Epoch is the stream's incarnation after the append.
	Epoch string
	// Prev is the stream's newest id before this batch, in the same epoch;
	// zero when the batch started the stream (or a stream from before
	// epochs). A reader whose last delivered id is Prev, in Epoch, can
	// deliver Messages and be caught up to Last; anything else is a gap to
	// read from the stream.
	Prev messages.ID
	// Last is the newest id after the append.
	Last messages.ID
	// Messages are the messages this append stored, in id order, or nil when
	// they were omitted (over NoticeInlineMax, or the notice could not be
	// decoded).
	Messages []messages.Message
}

// noticeJSON is the wire form the append script writes:
// {"topic","epoch","prev","last","messages"?:[{"id","timestamp","payload",
// "metadata"?,"expires_at"?}]}.
type noticeJSON struct {
	Topic    string          `json:"topic"`
	Epoch    string          `json:"epoch"`
	Prev     string          `json:"prev"`
	Last     string          `json:"last"`
	Messages []noticeMessage `json:"messages"`
}

type noticeMessage struct {
	ID        string            `json:"id"`
	Timestamp string            `json:"timestamp"`
	Payload   json.RawMessage   `json:"payload"`
	Metadata  map[string]string `json:"metadata"`
	ExpiresAt string            `json:"expires_at"`
}

// DecodeNotice parses a notice as the append script publishes it.
func DecodeNotice(b []byte) (Notice, error) {
	var w noticeJSON
	if !w.decodeFast(b) {
		w = noticeJSON{}
		if err := json.Unmarshal(b, &w); err != nil {
			return Notice{}, fmt.Errorf("notice: %w", err)
		}
	}
	if w.Topic == "" {
		return Notice{}, fmt.Errorf("notice: no topic")
	}
	n := Notice{Topic: w.Topic, Epoch: w.Epoch}
	var err error
	if n.Prev, err = messages.ParseID(w.Prev); err != nil {
		return Notice{}, fmt.Errorf("notice: prev: %w", err)
	}
	if n.Last, err = messages.ParseID(w.Last); err != nil {
		return Notice{}, fmt.Errorf("notice: last: %w", err)
	}
	if w.Messages == nil {
		return n, nil
	}
	n.Messages = make([]messages.Message, len(w.Messages))
	for i, wm := range w.Messages {
		m := &n.Messages[i]
		m.Topic, m.Payload = w.Topic, wm.Payload
		if len(wm.Metadata) > 0 {
			m.Metadata = wm.Metadata
		}
		if m.ID, err = messages.ParseID(wm.ID); err != nil {
			return Notice{}, fmt.Errorf("notice: message %d: %w", i, err)
		}
		if m.Timestamp, err = time.Parse(time.RFC3339Nano, wm.Timestamp); err != nil {
			return Notice{}, fmt.Errorf("notice: message %d: timestamp: %w", i, err)
		}
		if wm.ExpiresAt != "" {
			if m.ExpiresAt, err = time.Parse(time.RFC3339Nano, wm.ExpiresAt); err != nil {
				return Notice{}, fmt.Errorf("notice: message %d: expires_at: %w", i, err)
			}
		}
	}
	if len(n.Messages) > 0 && n.Messages[len(n.Messages)-1].ID != n.Last {
		return Notice{}, fmt.Errorf("notice: last %s is not its last message %s", n.Last, n.Messages[len(n.Messages)-1].ID)
	}
	return n, nil
}

// liveChannel is the pub/sub channel of topic's notices (same hash tag as
// its stream, so a cluster keeps it on the topic's shard): topic:{<topic>}:live,
// prefixed with db<N>: for a database N other than 0. Pub/sub is not per
// database, so without it a relay on one database heard another's notices
// (and delivered messages its own store does not hold).
func (s *ValkeyStore) liveChannel(topic string) string {
	return s.chanPrefix + "topic:{" + topic + "}:live"
}

// channelPrefix is liveChannel's prefix for database db.
func channelPrefix(db int) string {
	if db == 0 {
		return ""
	}
	return "db" + strconv.Itoa(db) + ":"
}

// channelTopic returns the topic of one of s's live channel names, or "".
func (s *ValkeyStore) channelTopic(channel string) string {
	rest, ok := strings.CutPrefix(channel, s.chanPrefix+"topic:{")
	if !ok {
		return ""
	}
	topic, ok := strings.CutSuffix(rest, "}:live")
	if !ok {
		return ""
	}
	return topic
}

// FeedHandler receives what a Feed hears. Calls are serialised (never two
// at once) and must return quickly: hand the notice to an actor and return.
// A handler must not call the Feed's methods (it runs on the connection's
// reader, which a Subscribe may be waiting on).
type FeedHandler interface {
	// OnNotice is called for each notice on a subscribed topic, including
	// those of this relay's own appends. A notice that cannot be decoded
	// arrives as Notice{Topic} alone (zero ids, no messages): read the
	// stream.
	OnNotice(Notice)
	// OnLink reports the pub/sub link: false (with the reason) when it is
	// lost or cannot be made, once per outage; true each time it is up
	// with every subscribed topic subscribed again, the first time
	// included. Notices may have been missed before an OnLink(true): every
	// subscribed topic should catch up from the stream.
	OnLink(up bool, err error)
}

// Feed subscribes to the notices of topics. Subscriptions are reference
// counted by the feed: Subscribe n times, Unsubscribe n times, and the
// channel is left on the last Unsubscribe. Safe for concurrent use.
// Subscribe and Unsubscribe talk to Valkey: against a stalled server they
// block up to a few store timeouts, so call them off an actor's Receive.
type Feed interface {
	// Subscribe adds one interest in topic. The interest is kept even when
	// it returns an error (wrapping messages.ErrUnavailable: the link is
	// down or the subscribe failed); the feed subscribes again when the link
	// is back and then calls OnLink(true).
	Subscribe(topic string) error
	// Unsubscribe removes one interest in topic.
	Unsubscribe(topic string) error
	// Up reports whether the link is up, for /ready.
	Up() bool
	// Close stops the feed; no handler call follows its return.
	Close() error
}

// nopFeed is the feed of a store that lives in one process: every append
// is local, so there is nothing to hear.
type nopFeed struct{}

func (nopFeed) Subscribe(string) error   { return nil }
func (nopFeed) Unsubscribe(string) error { return nil }
func (nopFeed) Up() bool                 { return true }
func (nopFeed) Close() error             { return nil }

// NewFeed implements Store: the memory store's feed never calls h (one
// process: the topic actors see every append themselves).
func (s *MemoryStore) NewFeed(h FeedHandler) (Feed, error) { return nopFeed{}, nil }
