package main

import (
	"net"
	"net/http"
	"sync"

	"github.com/valkey-io/valkey-go"
)

// The Valkey floor: the least a relay-shaped server does per publish in the
// ingest-valkey scenarios, so their figures can be set against what this
// machine allows at all with the same load generator, the same Valkey and
// the same two cores. Per publish: one HTTP request read and answered 201
// after Valkey stored the message (one script call, XADD and PUBLISH,
// auto-pipelined by valkey-go with the other publishes in flight), one
// message in on the one pattern subscription, and its frame queued for
// each subscriber of its topic, whose writer goroutine sends everything
// queued in one write(2) (a first version that wrote each frame at once
// from the receiving goroutine made about half the publishes/s over one
// topic with ten subscribers).
//
// What it leaves out, and the relay cannot: validation, limits, ids and
// replay, trimming and expiry, epochs, idempotency, authentication,
// back-pressure (a subscriber's queue grows without bound), metrics. It
// speaks what `relay bench --target relay` uses (serve.go).

// floorScript stores one message and announces it as the subscriber's frame.
var floorScript = valkey.NewLuaScript(`
local id = redis.call('XADD', KEYS[1], '*', 'payload', ARGV[2])
redis.call('PUBLISH', 'floor:' .. ARGV[1], '{"type":"message","topic":"' .. ARGV[1] .. '","message_id":"' .. id .. '","payload":' .. ARGV[2] .. '}')
return id
`)

// valkeyFloor holds the subscribers by topic.
type valkeyFloor struct {
	vk   valkey.Client
	mu   sync.Mutex
	subs map[string][]*floorSub
}

func serveValkey(args []string) error {
	addr, vk, err := floorFlags("valkey", args)
	if err != nil {
		return err
	}
	defer vk.Close()
	f := &valkeyFloor{vk: vk, subs: map[string][]*floorSub{}}
	subscribeFloor(vk, f.deliver)
	return serveFloor(addr, f.publish, f.subscribe)
}

// publish stores the body's payload on its topic and answers 201 once
// Valkey has it.
func (f *valkeyFloor) publish(w http.ResponseWriter, r *http.Request) {
	t, payload, ok := readPublish(w, r)
	if !ok {
		return
	}
	id, err := floorScript.Exec(r.Context(), f.vk, []string{"floor:{" + t + "}:stream"}, []string{t, valkey.BinaryString(payload)}).ToString()
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	answerPublish(w, id, t)
}

// subscribe registers the subscriber with its topic and holds the
// connection, discarding what the client sends, until it closes.
func (f *valkeyFloor) subscribe(w http.ResponseWriter, r *http.Request) {
	conn, rd, topic, ok := acceptSubscriber(w, r)
	if !ok {
		return
	}
	defer conn.Close()
	s := &floorSub{conn: conn, wake: make(chan struct{}, 1)}
	f.mu.Lock()
	f.subs[topic] = append(f.subs[topic], s)
	f.mu.Unlock()
	go s.writeLoop()
	holdSubscriber(rd)
	f.mu.Lock()
	list := f.subs[topic]
	for k, x := range list {
		if x == s {
			f.subs[topic] = append(list[:k:k], list[k+1:]...)
			break
		}
	}
	f.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.signal()
}

// floorSub is one subscriber: frames queue in pending and its writer
// sends everything queued in one write(2).
type floorSub struct {
	conn    net.Conn
	wake    chan struct{}
	mu      sync.Mutex
	pending []byte
	closed  bool
}

func (s *floorSub) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *floorSub) writeLoop() {
	var buf []byte
	for range s.wake {
		s.mu.Lock()
		buf, s.pending = s.pending, buf[:0]
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return
		}
		if len(buf) > 0 {
			if _, err := s.conn.Write(buf); err != nil {
				return
			}
		}
	}
}

// deliver queues one announced message for every subscriber of its topic.
func (f *valkeyFloor) deliver(m valkey.PubSubMessage) {
	topic := m.Channel[len("floor:"):]
	f.mu.Lock()
	subs := f.subs[topic]
	f.mu.Unlock()
	for _, s := range subs {
		s.mu.Lock()
		s.pending = appendFrame(s.pending, []byte(m.Message))
		s.mu.Unlock()
		s.signal()
	}
}
