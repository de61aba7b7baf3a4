package persistence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/pulsar-relay/relay/messages"
)

// valkeyFeed holds one dedicated pub/sub connection (valkey-go Dedicate with
// pub/sub hooks) on which it SSUBSCRIBEs the live channel of every topic it
// has an interest in. Sharded pub/sub (Valkey/Redis >= 7) is used in every
// mode, so standalone and cluster share one code path.
//
// A goroutine (run) owns the connection: it makes it, subscribes every
// topic, reports OnLink(true), waits for it to break (the hooks' error
// channel), reports OnLink(false) and makes it again with backoff.
type valkeyFeed struct {
	s *ValkeyStore
	h FeedHandler

	hmu sync.Mutex // serialises handler calls

	mu     sync.Mutex
	refs   map[string]int         // topic -> interests
	dc     valkey.DedicatedClient // nil while the link is down
	down   bool                   // OnLink(false) was reported for this outage
	closed bool

	stop chan struct{}
	wg   sync.WaitGroup
}

// NewFeed implements Store: a feed on its own connection to Valkey, which
// it keeps making while the store is open. It returns at once; OnLink
// reports when the link is up.
func (s *ValkeyStore) NewFeed(h FeedHandler) (Feed, error) {
	if h == nil {
		return nil, errors.New("valkey: feed: nil handler")
	}
	f := &valkeyFeed{s: s, h: h, refs: make(map[string]int), stop: make(chan struct{})}
	f.wg.Add(1)
	go f.run()
	return f, nil
}

func (f *valkeyFeed) run() {
	defer f.wg.Done()
	delay := connectBackoffMin
	for {
		errc, err := f.connect()
		if err == nil {
			delay = connectBackoffMin
			select {
			case err = <-errc:
			case <-f.stop:
				f.drop()
				return
			}
			if err == nil {
				err = errors.New("pub/sub connection closed")
			}
		}
		f.drop()
		f.linkDown(err)
		select {
		case <-f.stop:
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, connectBackoffMax)
	}
}

// connect makes the dedicated connection, subscribes every topic of
// interest and reports the link up. It returns the hooks' error channel.
func (f *valkeyFeed) connect() (<-chan error, error) {
	c, err := f.s.conn()
	if err != nil {
		return nil, err
	}
	dc, cancel := c.Dedicate()
	errc := dc.SetPubSubHooks(valkey.PubSubHooks{OnMessage: f.onMessage})
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		cancel()
		return nil, errors.New("feed closed")
	}
	chans := make([]string, 0, len(f.refs))
	for topic := range f.refs {
		chans = append(chans, liveChannel(topic))
	}
	// Subscribe under f.mu: a concurrent Subscribe either happened before
	// (and is in chans) or waits and then sends its own SSUBSCRIBE on dc.
	if len(chans) > 0 {
		if err := f.ssubscribe(dc, chans); err != nil {
			f.mu.Unlock()
			dc.Close()
			return nil, err
		}
	} else if err := f.ping(dc); err != nil {
		f.mu.Unlock()
		dc.Close()
		return nil, err
	}
	f.dc = dc
	f.down = false
	f.mu.Unlock()
	f.s.log.Info("valkey: feed link up", "topics", len(chans))
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

// drop closes the connection, if any.
func (f *valkeyFeed) drop() {
	f.mu.Lock()
	dc := f.dc
	f.dc = nil
	f.mu.Unlock()
	if dc != nil {
		dc.Close()
	}
}

// linkDown reports the outage once.
func (f *valkeyFeed) linkDown(err error) {
	f.mu.Lock()
	report := !f.down && !f.closed
	f.down = true
	f.mu.Unlock()
	if report {
		f.s.log.Warn("valkey: feed link down; notices may be missed until it is back", "err", err)
		f.call(func() { f.h.OnLink(false, err) })
	}
}

func (f *valkeyFeed) call(fn func()) {
	f.hmu.Lock()
	defer f.hmu.Unlock()
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if !closed {
		fn()
	}
}

func (f *valkeyFeed) onMessage(m valkey.PubSubMessage) {
	n, err := DecodeNotice([]byte(m.Message))
	if err != nil {
		n = Notice{Topic: channelTopic(m.Channel)}
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
	if f.closed {
		return fmt.Errorf("valkey: feed subscribe %q: %w: feed closed", topic, messages.ErrUnavailable)
	}
	f.refs[topic]++
	if f.refs[topic] > 1 {
		return nil
	}
	if f.dc == nil {
		return fmt.Errorf("valkey: feed subscribe %q: %w: link down", topic, messages.ErrUnavailable)
	}
	if err := f.ssubscribe(f.dc, []string{liveChannel(topic)}); err != nil {
		// Make run start over: it subscribes everything again.
		f.dc.Close()
		return fmt.Errorf("valkey: feed subscribe %q: %w: %w", topic, messages.ErrUnavailable, err)
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
	if f.dc == nil || f.closed {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.s.timeout)
	defer cancel()
	if err := f.dc.Do(ctx, f.dc.B().Sunsubscribe().Channel(liveChannel(topic)).Build()).Error(); err != nil {
		f.dc.Close()
		return fmt.Errorf("valkey: feed unsubscribe %q: %w: %w", topic, messages.ErrUnavailable, err)
	}
	return nil
}

// Up implements Feed.
func (f *valkeyFeed) Up() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dc != nil
}

// Close implements Feed.
func (f *valkeyFeed) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	f.mu.Unlock()
	close(f.stop)
	f.wg.Wait()
	f.hmu.Lock() // a handler call in progress finishes first
	f.hmu.Unlock()
	return nil
}
