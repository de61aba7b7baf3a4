package gateway

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/pulsar-relay/relay/messages"
)

// DefaultWSUpgradeRate is Config.WSUpgradeRate's default: new WebSocket
// connections per second per client IP address.
const DefaultWSUpgradeRate = 50

// upgradeWaitMax is the longest an upgrade waits for its client's pace
// before it is refused (429 with Retry-After).
const upgradeWaitMax = 5 * time.Second

// maxUpgradeClients bounds the clients the pacer tracks at once; an
// upgrade from a client beyond it is refused with 503.
const maxUpgradeClients = 1 << 16

// upgradePacer paces WebSocket upgrades per client IP address: a client
// opening hundreds of connections at once, each subscribing and replaying,
// makes a burst of work the Go scheduler queues other requests behind
// (docs/hardening.md: /health waited 116-164 ms for it). Paced, the same
// connections arrive over a few seconds.
//
// It holds one token bucket per client that upgraded within the last
// moments: sweep forgets a client whose bucket is full again, and at most
// maxUpgradeClients are held. Safe for concurrent use.
type upgradePacer struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	clients map[string]*rate.Limiter
}

func newUpgradePacer(perSecond float64) *upgradePacer {
	return &upgradePacer{limit: rate.Limit(perSecond), burst: max(1, int(perSecond/2)), clients: map[string]*rate.Limiter{}}
}

// wait takes client's next turn to upgrade, sleeping until it comes (at
// most upgradeWaitMax, and not past ctx). waited reports whether it slept.
// Errors wrap messages.ErrRateLimited (the turn is too far off: the caller
// answers 429) or messages.ErrUnavailable (too many clients tracked, or
// ctx ended).
func (p *upgradePacer) wait(ctx context.Context, client string) (waited bool, err error) {
	p.mu.Lock()
	l := p.clients[client]
	if l == nil {
		if len(p.clients) >= maxUpgradeClients {
			p.mu.Unlock()
			return false, fmt.Errorf("%w: too many clients connecting at once", messages.ErrUnavailable)
		}
		l = rate.NewLimiter(p.limit, p.burst)
		p.clients[client] = l
	}
	r := l.Reserve()
	p.mu.Unlock()
	d := r.Delay()
	if d == 0 {
		return false, nil
	}
	if d > upgradeWaitMax {
		r.Cancel()
		return true, fmt.Errorf("%w: over %g new connections per second from this client; retry in %s",
			messages.ErrRateLimited, float64(p.limit), d.Round(time.Second))
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true, nil
	case <-ctx.Done():
		r.Cancel()
		return true, fmt.Errorf("%w: %w", messages.ErrUnavailable, ctx.Err())
	}
}

// sweep forgets clients whose bucket is full again and returns how many
// are held.
func (p *upgradePacer) sweep(now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c, l := range p.clients {
		if l.TokensAt(now) >= float64(p.burst) {
			delete(p.clients, c)
		}
	}
	return len(p.clients)
}

// remoteClient is the client of the remote address r, by clientAddrKey.
func remoteClient(r string) string { return clientAddrKey(hostOf(r)) }
