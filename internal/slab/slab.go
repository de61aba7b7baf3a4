// Package slab copies small byte slices into shared append-only blocks.
//
// A holder of many small values kept for a while (a topic's stored
// payloads, a topic actor's recent messages) otherwise keeps one
// allocation per value, rounded up to its size class, and often a larger
// buffer the value was cut from (a publish's whole request body). In
// blocks the values take their own length, and the holder's heap grows
// by about that: on a VM every new page is a fault that costs more than
// the value's own work (bench/NOTES.md, item 55).
package slab

// Block sizes: a holder's first block is MinBlock bytes and each next one
// twice the last, up to MaxBlock. Values longer than MaxCopy are not
// copied.
const (
	MinBlock = 256
	MaxBlock = 32 << 10
	MaxCopy  = MaxBlock / 8
)

// Slab hands out copies in its newest block. The zero value is ready. A
// block lives as long as any copy in it; a holder that lets its values go
// oldest first frees blocks in order. Bytes a Slab returned are never
// written again, so they may be read without the holder's lock once
// handed out. Not safe for concurrent use.
type Slab struct {
	block []byte
}

// Copy returns p's bytes in the newest block, starting a new block when p
// does not fit: twice the last one's size, within [MinBlock, MaxBlock],
// but no larger than held, what the holder holds now (so a holder trimmed
// down to a few values gets small blocks again, and what blocks hold
// beyond live values stays within what the holder counts), and at least
// len(p). A p longer than MaxCopy is returned as it is, not copied: the
// caller must not change it afterwards. The result's capacity is its
// length, so an append to it cannot write into the next value.
func (s *Slab) Copy(p []byte, held int) []byte {
	if len(p) > MaxCopy {
		return p
	}
	if len(s.block)+len(p) > cap(s.block) {
		size := max(min(2*cap(s.block), MaxBlock, held), MinBlock, len(p))
		s.block = make([]byte, 0, size)
	}
	start := len(s.block)
	s.block = append(s.block, p...)
	return s.block[start:len(s.block):len(s.block)]
}

// Room is the newest block's capacity (for tests).
func (s *Slab) Room() int { return cap(s.block) }
