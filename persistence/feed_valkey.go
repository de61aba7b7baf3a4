package persistence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/pulsar-relay/relay/messages"
)

// valkeyFeed listens to the live channels of the topics it has an interest
// in, with sharded pub/sub (SSUBSCRIBE; Valkey/Redis >= 7) in every mode so
// that standalone and cluster share one code path.
//
// Links: each link is one dedicated pub/sub connection (valkey-go Dedicate
// with pub/sub hooks) and a goroutine that owns it: it makes the connection,
// subscribes the link's topics, reports OnLink(true), waits for the
// connection to break, reports OnLink(false) and makes it again with
// backoff. Against a standalone server there is one link for every topic,
// made as soon as the store is connected. Against a cluster a dedicated
// connection is bound to one hash slot, so there is one link per slot in
// use, made on the first Subscribe of a topic in that slot and closed on the
// last Unsubscribe: a relay holds as many pub/sub connections as the slots
// of its subscribed topics (at most 16384).
//
// Until the store has connected (and so knows the mode), Subscribe only
// records the interest; a setup goroutine makes the links once it can.
type valkeyFeed struct {
	s *ValkeyStore
	h FeedHandler

	hmu sync.Mutex // serialises handler calls

	mu      sync.Mutex
	refs    map[string]int // topic -> interests
	links   map[uint16]*feedLink
	ready   bool // the mode is known and links exist for every topic
	cluster bool
	closed  atomic.Bool // read without mu by handler calls

	stop chan struct{}
	wg   sync.WaitGroup
}

// feedLink is one pub/sub connection and the topics it carries. Its
// fields are guarded by the feed's mu.
type feedLink struct {
	f      *valkeyFeed
	slot   uint16
	topics map[string]bool
	dc     valkey.DedicatedClient // nil while down
	down   bool                   // OnLink(false) was reported for this outage
	stop   chan struct{}          // closed when the link is no longer wanted

	// want mirrors topics for the subscription hook, which runs while a
	// SUNSUBSCRIBE of ours may hold f.mu and so must not take it.
	wmu  sync.Mutex
	want map[string]bool
}

// NewFeed implements Store: a feed on its own connections to Valkey, which
// it keeps making while the store is open. It returns at once; OnLink
// reports when a link is up.
func (s *ValkeyStore) NewFeed(h FeedHandler) (Feed, error) {
	if h == nil {
		return nil, errors.New("valkey: feed: nil handler")
	}
	f := &valkeyFeed{s: s, h: h, refs: make(map[string]int), links: make(map[uint16]*feedLink), stop: make(chan struct{})}
	if c, err := s.conn(); err == nil {
		f.mu.Lock()
		f.startLocked(c)
		f.mu.Unlock()
		return f, nil
	}
	f.wg.Add(1)
	go f.setup()
	return f, nil
}

// startLocked learns the mode from the connected client and makes the
// links.
func (f *valkeyFeed) startLocked(c valkey.Client) {
	f.cluster = c.Mode() == valkey.ClientModeCluster
	f.ready = true
	if !f.cluster {
		f.linkLocked(0) // the one link, also with no topic yet
	}
	for topic := range f.refs {
		f.addLocked(topic)
	}
}

// setup waits for the store's client, then makes the links.
func (f *valkeyFeed) setup() {
	defer f.wg.Done()
	delay := connectBackoffMin
	reported := false
	for {
		c, err := f.s.conn()
		if err == nil {
			f.mu.Lock()
			defer f.mu.Unlock()
			if !f.closed.Load() {
				f.startLocked(c)
			}
			return
		}
		if !reported {
			reported = true
			f.s.log.Warn("valkey: feed waits for the store to connect", "err", err)
			f.call(func() { f.h.OnLink(false, err) })
		}
		select {
		case <-f.stop:
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, connectBackoffMax)
	}
}

// slotOf returns the link key of topic: its channel's hash slot in a
// cluster, 0 otherwise.
func (f *valkeyFeed) slotOf(topic string) uint16 {
	if !f.cluster {
		return 0
	}
	return hashSlot(topic)
}

// linkLocked returns the link of slot, making it (and its goroutine) if
// need be.
func (f *valkeyFeed) linkLocked(slot uint16) *feedLink {
	l := f.links[slot]
	if l == nil {
		l = &feedLink{f: f, slot: slot, topics: make(map[string]bool), want: make(map[string]bool), stop: make(chan struct{})}
		f.links[slot] = l
		f.wg.Add(1)
		go l.run()
	}
	return l
}

// addLocked puts topic on its link, subscribing at once if the link is up.
func (f *valkeyFeed) addLocked(topic string) error {
	l := f.linkLocked(f.slotOf(topic))
	l.topics[topic] = true
	l.setWant(topic, true)
	if l.dc == nil {
		if l.down {
			return fmt.Errorf("%w: link down", messages.ErrUnavailable)
		}
		return nil // connecting: it subscribes the link's topics, then OnLink(true)
	}
	if err := f.ssubscribe(l.dc, []string{f.s.liveChannel(topic)}); err != nil {
		// The link starts over and subscribes everything again. Not
		// under f.mu: closing waits for the connection's reader, which
		// may be waiting for the handler lock.
		go l.dc.Close()
		return fmt.Errorf("%w: %w", messages.ErrUnavailable, err)
	}
	return nil
}

func (l *feedLink) run() {
	f := l.f
	defer f.wg.Done()
	delay := connectBackoffMin
	for {
		errc, err := l.connect()
		if err == nil {
			delay = connectBackoffMin
			select {
			case err = <-errc:
			case <-l.stop:
				l.drop()
				return
			case <-f.stop:
				l.drop()
				return
			}
			if err == nil {
				err = errors.New("pub/sub connection closed")
			}
		}
		l.drop()
		select {
		case <-l.stop: // closed on purpose
			return
		default:
		}
		l.linkDown(err)
		select {
		case <-f.stop:
			return
		case <-l.stop:
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, connectBackoffMax)
	}
}

// connect makes the link's connection, subscribes its topics and reports
// the link up. It returns the hooks' error channel.
func (l *feedLink) connect() (<-chan error, error) {
	f := l.f
	c, err := f.s.conn()
	if err != nil {
		return nil, err
	}
	dc, cancel := c.Dedicate()
	errc := dc.SetPubSubHooks(valkey.PubSubHooks{
		OnMessage:      f.onMessage,
		OnSubscription: func(s valkey.PubSubSubscription) { l.onSubscription(dc, s) },
	})
	f.mu.Lock()
	select {
	case <-l.stop:
		f.mu.Unlock()
		cancel()
		return nil, errors.New("link closed")
	default:
	}
	if f.closed.Load() {
		f.mu.Unlock()
		cancel()
		return nil, errors.New("feed closed")
	}
	chans := make([]string, 0, len(l.topics))
	for topic := range l.topics {
		chans = append(chans, f.s.liveChannel(topic))
	}
	// Subscribe under f.mu: a concurrent Subscribe either happened before
	// (and is in chans) or waits and then sends its own SSUBSCRIBE on dc.
	if len(chans) > 0 {
		err = f.ssubscribe(dc, chans)
	} else {
		err = f.ping(dc) // standalone only: a cluster link always has a topic
	}
	if err != nil {
		f.mu.Unlock()
		dc.Close()
		return nil, err
	}
	l.dc = dc
	l.down = false
	f.mu.Unlock()
	f.s.log.Info("valkey: feed link up", "topics", len(chans), "slot", l.slot)
	f.call(func() { f.h.OnLink(true, nil) })
	return errc, nil
}

func (f *valkeyFeed) ssubscribe(dc valkey.DedicatedClient, chans []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), f.s.timeout)
	defer cancel()
	return dc.Do(ctx, dc.B().Ssubscribe().Channel(chans...).Build()).Error()
}

func (f *valkeyFeed) ping(dc valkey.DedicatedClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), f.s.timeout)
	defer cancel()
	return dc.Do(ctx, dc.B().Ping().Build()).Error()
}

func (l *feedLink) setWant(topic string, on bool) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if on {
		l.want[topic] = true
	} else {
		delete(l.want, topic)
	}
}

// onSubscription watches for a subscription the server ends by itself: a
// cluster node that loses a hash slot (resharding, failover) sends
// SUNSUBSCRIBE for its channels, and the link would stay up while hearing
// nothing. The link starts over instead (OnLink false, then true once it has
// subscribed again at the slot's new owner).
func (l *feedLink) onSubscription(dc valkey.DedicatedClient, s valkey.PubSubSubscription) {
	if s.Kind != "sunsubscribe" {
		return
	}
	topic := l.f.s.channelTopic(s.Channel)
	l.wmu.Lock()
	wanted := l.want[topic]
	l.wmu.Unlock()
	if wanted {
		l.f.s.log.Warn("valkey: feed: the server ended a subscription (slot moved?); reconnecting", "topic", topic, "slot", l.slot)
		go dc.Close() // not from the connection's own reader
	}
}

// drop closes the link's connection, if any.
func (l *feedLink) drop() {
	l.f.mu.Lock()
	dc := l.dc
	l.dc = nil
	l.f.mu.Unlock()
	if dc != nil {
		dc.Close()
	}
}

// linkDown reports the outage once.
func (l *feedLink) linkDown(err error) {
	f := l.f
	f.mu.Lock()
	report := !l.down && !f.closed.Load()
	l.down = true
	f.mu.Unlock()
	if report {
		f.s.log.Warn("valkey: feed link down; notices may be missed until it is back", "slot", l.slot, "err", err)
		f.call(func() { f.h.OnLink(false, err) })
	}
}

// call runs a handler call unless the feed is closed. It must not take mu:
// pub/sub hooks call it from the connection's reader, which a Subscribe
// holding mu may be waiting on.
func (f *valkeyFeed) call(fn func()) {
	f.hmu.Lock()
	defer f.hmu.Unlock()
	if !f.closed.Load() {
		fn()
	}
}

func (f *valkeyFeed) onMessage(m valkey.PubSubMessage) {
	n, err := DecodeNotice([]byte(m.Message))
	if err != nil {
		n = Notice{Topic: f.s.channelTopic(m.Channel)}
		if n.Topic == "" {
			return
		}
	}
	f.call(func() { f.h.OnNotice(n) })
}

// Subscribe implements Feed.
func (f *valkeyFeed) Subscribe(topic string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed.Load() {
		return fmt.Errorf("valkey: feed subscribe %q: %w: feed closed", topic, messages.ErrUnavailable)
	}
	f.refs[topic]++
	if f.refs[topic] > 1 {
		return nil
	}
	if !f.ready {
		return fmt.Errorf("valkey: feed subscribe %q: %w: not connected yet", topic, messages.ErrUnavailable)
	}
	if err := f.addLocked(topic); err != nil {
		return fmt.Errorf("valkey: feed subscribe %q: %w", topic, err)
	}
	return nil
}

// Unsubscribe implements Feed.
func (f *valkeyFeed) Unsubscribe(topic string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refs[topic] == 0 {
		return nil
	}
	f.refs[topic]--
	if f.refs[topic] > 0 {
		return nil
	}
	delete(f.refs, topic)
	if !f.ready || f.closed.Load() {
		return nil
	}
	l := f.links[f.slotOf(topic)]
	if l == nil {
		return nil
	}
	delete(l.topics, topic)
	l.setWant(topic, false)
	if f.cluster && len(l.topics) == 0 {
		delete(f.links, l.slot)
		close(l.stop) // its goroutine closes the connection
		return nil
	}
	if l.dc == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.s.timeout)
	defer cancel()
	if err := l.dc.Do(ctx, l.dc.B().Sunsubscribe().Channel(f.s.liveChannel(topic)).Build()).Error(); err != nil {
		go l.dc.Close() // not under f.mu: see addLocked
		return fmt.Errorf("valkey: feed unsubscribe %q: %w: %w", topic, messages.ErrUnavailable, err)
	}
	return nil
}

// Up implements Feed: the store is connected and every link is up.
func (f *valkeyFeed) Up() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ready || f.closed.Load() {
		return false
	}
	for _, l := range f.links {
		if l.dc == nil {
			return false
		}
	}
	return true
}

// Close implements Feed.
func (f *valkeyFeed) Close() error {
	f.mu.Lock()
	if f.closed.Load() {
		f.mu.Unlock()
		return nil
	}
	f.closed.Store(true)
	f.mu.Unlock()
	close(f.stop)
	f.wg.Wait()
	f.hmu.Lock() // a handler call in progress finishes first
	f.hmu.Unlock()
	return nil
}

// hashSlot is the cluster hash slot of topic's keys and channel: CRC16
// (XMODEM) of the hash tag, which is the topic itself, mod 16384.
func hashSlot(topic string) uint16 {
	var crc uint16
	for i := 0; i < len(topic); i++ {
		crc ^= uint16(topic[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}
