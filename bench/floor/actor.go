package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/valkey-io/valkey-go"
)

// The actor floor: the Valkey floor's work (valkey.go) in the relay's shape,
// so the relay's distance to the Valkey floor can be split into what the
// shape costs and what the relay's own work costs. Stock protoactor-go (its
// default mailbox and dispatcher), one actor per topic and one per
// subscriber, and the hand-offs the relay's design makes per publish:
//
//	handler -> topic actor: the publish, with a reply channel
//	topic actor -> a write goroutine: the batch queued while the last write
//	    was out (one script call: XADD each, PUBLISH one notice with the
//	    frames) -> topic actor: the ids -> each handler: its answer
//	the pattern subscription -> topic actor: the notice -> each subscriber's
//	    connection actor: the notice's frames, written in one write(2)
//
// What it leaves out is what the Valkey floor leaves out: validation,
// limits, epochs and prev ids, trimming, expiry, idempotency, group commit
// across topics, back-pressure, supervision, metrics. It speaks what
// `relay bench --target relay` uses, as the Valkey floor does.

// actorScript stores a batch of one topic's payloads (ARGV[2...]) and
// announces their frames, separated by newlines (compact JSON has none), on
// the topic's channel. It returns the ids.
var actorScript = valkey.NewLuaScript(`
local ids, frames = {}, {}
for i = 2, #ARGV do
  local id = redis.call('XADD', KEYS[1], '*', 'payload', ARGV[i])
  ids[#ids + 1] = id
  frames[#frames + 1] = '{"type":"message","topic":"' .. ARGV[1] .. '","message_id":"' .. id .. '","payload":' .. ARGV[i] .. '}'
end
redis.call('PUBLISH', 'floor:' .. ARGV[1], table.concat(frames, '\n'))
return ids
`)

// Messages between the actor floor's parts.
type (
	// afPublish is one publish; the topic actor sets id or err and sends
	// it back on reply.
	afPublish struct {
		payload []byte
		id      string
		err     error
		reply   chan *afPublish
	}
	// afWritten is a finished write, back in the topic actor.
	afWritten struct {
		batch []*afPublish
		ids   []string
		err   error
	}
	afNotice    struct{ frames []byte } // announced frames, newline-separated
	afFrames    struct{ wire []byte }   // encoded WebSocket frames for one write
	afSubscribe struct{ pid *actor.PID }
	afLeave     struct{ pid *actor.PID }
)

// actorFloor holds the actor system and the topic actors by name.
type actorFloor struct {
	sys    *actor.ActorSystem
	vk     valkey.Client
	mu     sync.Mutex
	topics map[string]*actor.PID
}

func serveActor(args []string) error {
	addr, vk, err := floorFlags("actor", args)
	if err != nil {
		return err
	}
	defer vk.Close()
	f := newActorFloor(vk)
	subscribeFloor(vk, f.notice)
	return serveFloor(addr, f.publish, f.subscribe)
}

// newActorFloor returns an actor floor on vk, its actor system's logs
// discarded.
func newActorFloor(vk valkey.Client) *actorFloor {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	return &actorFloor{
		sys:    actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet })),
		vk:     vk,
		topics: map[string]*actor.PID{},
	}
}

// topic returns the topic actor of name, spawning it on first use.
func (f *actorFloor) topic(name string) *actor.PID {
	f.mu.Lock()
	defer f.mu.Unlock()
	pid, ok := f.topics[name]
	if !ok {
		t := &afTopic{name: name, vk: f.vk, root: f.sys.Root}
		pid = f.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return t }))
		f.topics[name] = pid
	}
	return pid
}

// publish hands the body's payload to its topic actor and answers 201 once
// the actor says Valkey stored it.
func (f *actorFloor) publish(w http.ResponseWriter, r *http.Request) {
	t, payload, ok := readPublish(w, r)
	if !ok {
		return
	}
	p := &afPublish{payload: payload, reply: make(chan *afPublish, 1)}
	f.sys.Root.Send(f.topic(t), p)
	<-p.reply
	if p.err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	answerPublish(w, p.id, t)
}

// notice hands an announced batch to its topic's actor.
func (f *actorFloor) notice(m valkey.PubSubMessage) {
	name := m.Channel[len("floor:"):]
	f.mu.Lock()
	pid := f.topics[name]
	f.mu.Unlock()
	if pid != nil {
		f.sys.Root.Send(pid, &afNotice{frames: []byte(m.Message)})
	}
}

// subscribe spawns the subscriber's connection actor and registers it
// with its topic actor until the client closes.
func (f *actorFloor) subscribe(w http.ResponseWriter, r *http.Request) {
	conn, rd, name, ok := acceptSubscriber(w, r)
	if !ok {
		return
	}
	defer conn.Close()
	c := &afConn{conn: conn}
	pid := f.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return c }))
	tp := f.topic(name)
	f.sys.Root.Send(tp, &afSubscribe{pid: pid})
	holdSubscriber(rd)
	f.sys.Root.Send(tp, &afLeave{pid: pid})
	f.sys.Root.Stop(pid)
}

// afTopic is a topic actor: it writes one batch at a time and forwards
// announced frames to its subscribers' connection actors.
type afTopic struct {
	name    string
	vk      valkey.Client
	root    *actor.RootContext
	pending []*afPublish
	writing bool
	subs    []*actor.PID
}

func (t *afTopic) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *afPublish:
		t.pending = append(t.pending, m)
		t.write(ctx)
	case *afWritten:
		t.writing = false
		for i, p := range m.batch {
			if m.err == nil && i < len(m.ids) {
				p.id = m.ids[i]
			} else {
				p.err = fmt.Errorf("not stored: %v", m.err)
			}
			p.reply <- p
		}
		t.write(ctx)
	case *afNotice:
		if len(t.subs) == 0 {
			return
		}
		var wire []byte
		for part := range bytes.SplitSeq(m.frames, []byte{'\n'}) {
			wire = appendFrame(wire, part)
		}
		out := &afFrames{wire: wire}
		for _, s := range t.subs {
			ctx.Send(s, out)
		}
	case *afSubscribe:
		t.subs = append(t.subs, m.pid)
	case *afLeave:
		for i, s := range t.subs {
			if s.Equal(m.pid) {
				t.subs = append(t.subs[:i:i], t.subs[i+1:]...)
				break
			}
		}
	}
}

// write starts a write of everything pending if none is out; its result
// comes back to the actor as an afWritten.
func (t *afTopic) write(ctx actor.Context) {
	if t.writing || len(t.pending) == 0 {
		return
	}
	batch := t.pending
	t.pending = nil
	t.writing = true
	args := make([]string, 1, 1+len(batch))
	args[0] = t.name
	for _, p := range batch {
		args = append(args, valkey.BinaryString(p.payload))
	}
	self, root, vk, key := ctx.Self(), t.root, t.vk, []string{"floor:{" + t.name + "}:stream"}
	go func() {
		ids, err := actorScript.Exec(context.Background(), vk, key, args).AsStrSlice()
		root.Send(self, &afWritten{batch: batch, ids: ids, err: err})
	}()
}

// afConn is a subscriber's connection actor: it writes what it is sent.
type afConn struct{ conn net.Conn }

func (c *afConn) Receive(ctx actor.Context) {
	if m, ok := ctx.Message().(*afFrames); ok {
		c.conn.Write(m.wire)
	}
}
