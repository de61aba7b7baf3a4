package slab

import (
	"bytes"
	"testing"
)

// TestCopy: copies survive the caller's reuse of its buffer, cannot be
// appended into each other, and a large value is kept as given.
func TestCopy(t *testing.T) {
	var s Slab
	buf := []byte(`{"a":1}`)
	a := s.Copy(buf, 1<<20)
	b := s.Copy([]byte(`{"b":2}`), 1<<20)
	copy(buf, "xxxxxxx")
	if string(a) != `{"a":1}` || string(b) != `{"b":2}` {
		t.Fatalf("copies %s %s after the caller reused its buffer", a, b)
	}
	_ = append(a, "garbage"...)
	if string(b) != `{"b":2}` {
		t.Fatalf("an append to one copy wrote into the next: %s", b)
	}
	if &a[0] == &buf[0] || s.Room() != MinBlock {
		t.Fatalf("a small value was not copied into a %d-byte first block (room %d)", MinBlock, s.Room())
	}
	large := bytes.Repeat([]byte("y"), MaxCopy+1)
	if c := s.Copy(large, 1<<20); &c[0] != &large[0] {
		t.Fatal("a value over MaxCopy was copied")
	}
	if c := s.Copy(nil, 0); len(c) != 0 {
		t.Fatalf("Copy(nil) = %q", c)
	}
}

// TestBlocksFollowWhatIsHeld: blocks double up to MaxBlock while the
// holder holds much, and are small again once it holds little.
func TestBlocksFollowWhatIsHeld(t *testing.T) {
	var s Slab
	v := bytes.Repeat([]byte("v"), 100)
	for range 2000 {
		s.Copy(v, 1<<30)
	}
	if s.Room() != MaxBlock {
		t.Fatalf("after 200 KB of copies the block is %d bytes, want %d", s.Room(), MaxBlock)
	}
	for s.Room() == MaxBlock {
		s.Copy(v, 300) // the holder now holds 300 bytes
	}
	if s.Room() != 300 {
		t.Fatalf("holding 300 bytes, the next block is %d bytes, want 300", s.Room())
	}
	for s.Room() == 300 {
		s.Copy(v, 10)
	}
	if s.Room() != MinBlock {
		t.Fatalf("holding 10 bytes, the next block is %d bytes, want the minimum %d", s.Room(), MinBlock)
	}
}
