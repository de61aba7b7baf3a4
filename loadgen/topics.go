package loadgen

import (
	"fmt"
	"strconv"
)

// topicName returns the name of topic i under prefix: "<prefix>-<i>". Names
// use only [A-Za-z0-9._-], valid for both the relay and Centrifugo (no ':'
// so Centrifugo applies its default namespace).
func topicName(prefix string, i int) string {
	return prefix + "-" + strconv.Itoa(i)
}

// topicIndex parses the index back out of a name made by topicName, checking
// the prefix; ok is false for a foreign name.
func topicIndex(prefix string, name []byte) (int, bool) {
	if len(name) <= len(prefix)+1 || string(name[:len(prefix)]) != prefix || name[len(prefix)] != '-' {
		return 0, false
	}
	digits := name[len(prefix)+1:]
	if len(digits) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// validPrefix reports whether prefix is usable as a topic-name prefix.
func validPrefix(prefix string) error {
	if prefix == "" || len(prefix) > 200 {
		return fmt.Errorf("topic prefix must be 1..200 characters, got %d", len(prefix))
	}
	for _, c := range prefix {
		ok := c == '.' || c == '_' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !ok {
			return fmt.Errorf("topic prefix %q: only [A-Za-z0-9._-] allowed", prefix)
		}
	}
	return nil
}
