package messages

import (
	"fmt"
	"strconv"
	"strings"
)

// ID is a per-topic message id, "<unix_ms>-<seq>", the form of a Valkey stream
// entry id. The zero ID ("0-0") sorts before every real id, so "after the zero
// ID" means "from the beginning".
type ID struct {
	Ms  uint64
	Seq uint64
}

// ParseID parses "<ms>-<seq>". A bare "<ms>" is accepted as "<ms>-0".
func ParseID(s string) (ID, error) {
	msPart, seqPart, hasSeq := strings.Cut(s, "-")
	ms, err := strconv.ParseUint(msPart, 10, 64)
	if err != nil {
		return ID{}, fmt.Errorf("%w: message id %s is not <unix_ms>-<seq>", ErrInvalid, QuotePrefix(s))
	}
	var seq uint64
	if hasSeq {
		if seq, err = strconv.ParseUint(seqPart, 10, 64); err != nil {
			return ID{}, fmt.Errorf("%w: message id %s is not <unix_ms>-<seq>", ErrInvalid, QuotePrefix(s))
		}
	}
	return ID{Ms: ms, Seq: seq}, nil
}

// String formats the id as "<ms>-<seq>".
func (id ID) String() string {
	var b [41]byte
	out := strconv.AppendUint(b[:0], id.Ms, 10)
	out = append(out, '-')
	out = strconv.AppendUint(out, id.Seq, 10)
	return string(out)
}

// AppendTo appends the id's text form to b without allocating.
func (id ID) AppendTo(b []byte) []byte {
	b = strconv.AppendUint(b, id.Ms, 10)
	b = append(b, '-')
	return strconv.AppendUint(b, id.Seq, 10)
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id.Ms == 0 && id.Seq == 0 }

// Less reports whether id sorts before other.
func (id ID) Less(other ID) bool {
	if id.Ms != other.Ms {
		return id.Ms < other.Ms
	}
	return id.Seq < other.Seq
}

// Compare returns -1, 0 or +1 as id sorts before, equal to or after other.
func (id ID) Compare(other ID) int {
	switch {
	case id.Less(other):
		return -1
	case other.Less(id):
		return 1
	}
	return 0
}

// Next returns the smallest id greater than id.
func (id ID) Next() ID {
	if id.Seq == ^uint64(0) {
		return ID{Ms: id.Ms + 1}
	}
	return ID{Ms: id.Ms, Seq: id.Seq + 1}
}

// NextAfter returns the id for a message appended at unix millisecond nowMs
// after last: nowMs-0 when the clock moved forward, otherwise last's
// millisecond with the next sequence, so ids stay strictly increasing even if
// the wall clock steps back.
func NextAfter(last ID, nowMs uint64) ID {
	if nowMs > last.Ms {
		return ID{Ms: nowMs}
	}
	return last.Next()
}
