package loadgen

import (
	"context"
	"sync/atomic"
)

// spreadDriver spreads a run over several servers (relay instances
// sharing one store): subscriber connections and publish requests go to
// its drivers in turn. Safe for concurrent use as each driver is.
type spreadDriver struct {
	ds        []driver
	conns     atomic.Uint64
	publishes atomic.Uint64
}

func (s *spreadDriver) next(c *atomic.Uint64) driver {
	return s.ds[(c.Add(1)-1)%uint64(len(s.ds))]
}

func (s *spreadDriver) connect(ctx context.Context, topic string) (subConn, error) {
	return s.next(&s.conns).connect(ctx, topic)
}

// appendPublishBody is the same for every server of one kind.
func (s *spreadDriver) appendPublishBody(dst []byte, topic string, payload []byte) []byte {
	return s.ds[0].appendPublishBody(dst, topic, payload)
}

func (s *spreadDriver) publish(ctx context.Context, body []byte) error {
	return s.next(&s.publishes).publish(ctx, body)
}

func (s *spreadDriver) publishBatch(ctx context.Context, b *batch) error {
	return s.next(&s.publishes).publishBatch(ctx, b)
}
