package loadgen

import "math/bits"

// bitset is a growable set of small non-negative integers (message seqs).
// The zero value is an empty set. It is not safe for concurrent use.
type bitset struct {
	words []uint64
}

// set adds i and reports whether it was already present.
func (b *bitset) set(i uint64) (had bool) {
	w := int(i / 64)
	if w >= len(b.words) {
		n := max(w+1, 2*len(b.words))
		grown := make([]uint64, n)
		copy(grown, b.words)
		b.words = grown
	}
	mask := uint64(1) << (i % 64)
	had = b.words[w]&mask != 0
	b.words[w] |= mask
	return had
}

// has reports whether i is in the set.
func (b *bitset) has(i uint64) bool {
	w := int(i / 64)
	return w < len(b.words) && b.words[w]&(uint64(1)<<(i%64)) != 0
}

// count returns the number of members.
func (b *bitset) count() int {
	n := 0
	for _, w := range b.words {
		n += bits.OnesCount64(w)
	}
	return n
}

// andNotCount returns |b \ o|: members of b missing from o.
func (b *bitset) andNotCount(o *bitset) int {
	n := 0
	for i, w := range b.words {
		if i < len(o.words) {
			w &^= o.words[i]
		}
		n += bits.OnesCount64(w)
	}
	return n
}
