package messages

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

var timeZero = time.Date(2026, 11, 27, 1, 17, 27, 656581000, time.UTC)

func TestIDs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ID
		ok   bool
	}{
		{"1-2", ID{1, 2}, true}, {"1795744358685-0", ID{1795744358685, 0}, true}, {"42", ID{42, 0}, true},
		{"", ID{}, false}, {"a-1", ID{}, false}, {"1-", ID{}, false}, {"-1", ID{}, false}, {"1-2-3", ID{}, false},
	} {
		got, err := ParseID(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseID(%q) = %v, %v", tc.in, got, err)
		}
		if tc.ok && tc.in != "42" && got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
	if got := NextAfter(ID{100, 5}, 50); got != (ID{100, 6}) {
		t.Errorf("clock stepped back: got %v, want 100-6", got)
	}
	if got := NextAfter(ID{100, 5}, 101); got != (ID{101, 0}) {
		t.Errorf("clock forward: got %v", got)
	}
	if !(ID{1, 9}).Less(ID{2, 0}) || (ID{2, 0}).Less(ID{1, 9}) || (ID{1, 1}).Compare(ID{1, 1}) != 0 {
		t.Error("ordering")
	}
}

func TestFrameEncoding(t *testing.T) {
	m := Message{ID: ID{5, 1}, Topic: "a.b", Payload: json.RawMessage(`{"x":"\u00e9\"q"}`), Timestamp: timeZero,
		Metadata: map[string]string{"k": "v\"w"}}
	var f map[string]any
	if err := json.Unmarshal(m.AppendFrame(nil), &f); err != nil {
		t.Fatal(err)
	}
	if f["type"] != "message" || f["message_id"] != "5-1" || f["topic"] != "a.b" || f["timestamp"] != "2026-11-27T01:17:27.656581Z" ||
		f["payload"].(map[string]any)["x"] != "é\"q" || f["metadata"].(map[string]any)["k"] != "v\"w" {
		t.Fatalf("frame %v", f)
	}
	b, _ := json.Marshal(m)
	var stored map[string]any
	if err := json.Unmarshal(b, &stored); err != nil || stored["type"] != nil || stored["message_id"] != "5-1" {
		t.Fatalf("stored form %s: %v", b, err)
	}
}

// TestFrameSizedOnce: Frame and MarshalJSON size their buffer for what they
// write (no regrowth), for the longest ids, empty and long payloads, long
// topics and metadata that needs no escaping; without metadata that is
// their one allocation. Escaped metadata still encodes whole.
func TestFrameSizedOnce(t *testing.T) {
	long := make([]byte, 0, 3000)
	long = append(long, `{"p":"`...)
	for len(long) < 2990 {
		long = append(long, 'x')
	}
	long = append(long, `"}`...)
	top := ^uint64(0)
	for _, m := range []Message{
		{ID: ID{top, top}, Topic: "t", Timestamp: timeZero},
		{ID: ID{1, 0}, Topic: string(make([]byte, 256)), Payload: long, Timestamp: timeZero},
		{ID: ID{top, 7}, Topic: "a.b-c_d", Payload: json.RawMessage(`{"seq":1}`), Timestamp: timeZero,
			Metadata: map[string]string{"source": "galaxy", "job": "1234567", "": ""}},
	} {
		f := m.Frame()
		if want := string(m.AppendFrame(nil)); string(f) != want {
			t.Fatalf("Frame %s, AppendFrame %s", f, want)
		}
		if sized := len(frameHead) + m.fieldsLen(); cap(f) != sized {
			t.Errorf("Frame of %d bytes regrew its buffer of %d to %d", len(f), sized, cap(f))
		}
		if j, _ := m.MarshalJSON(); cap(j) != 1+m.fieldsLen() {
			t.Errorf("MarshalJSON of %d bytes regrew its buffer of %d to %d", len(j), 1+m.fieldsLen(), cap(j))
		}
		if m.Metadata != nil {
			continue // encoding/json encodes it, with allocations of its own
		}
		if n := testing.AllocsPerRun(20, func() { _ = m.Frame() }); n != 1 {
			t.Errorf("Frame of %d bytes: %v allocations, want 1", len(f), n)
		}
		if n := testing.AllocsPerRun(20, func() { _, _ = m.MarshalJSON() }); n != 1 {
			t.Errorf("MarshalJSON of %d bytes: %v allocations, want 1", len(f), n)
		}
	}
	escaped := Message{ID: ID{1, 1}, Topic: "t", Timestamp: timeZero, Metadata: map[string]string{"k": "\x00\x01<>&\"\\"}}
	var f map[string]any
	if err := json.Unmarshal(escaped.Frame(), &f); err != nil || f["metadata"].(map[string]any)["k"] != escaped.Metadata["k"] {
		t.Fatalf("escaped metadata: %v, %v", f, err)
	}
}

func TestPositions(t *testing.T) {
	f, err := DecodeClientFrame([]byte(`{"type":"subscribe","topics":["a","b","c"],"offset":"earliest","since":{"b":"7-1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if p := f.Position("a"); p.Live || !p.After.IsZero() || p.Explicit {
		t.Errorf("a: %+v", p)
	}
	if p := f.Position("b"); p.After != (ID{7, 1}) || !p.Explicit {
		t.Errorf("b: %+v", p)
	}
	f, _ = DecodeClientFrame([]byte(`{"type":"subscribe","topics":["a"]}`))
	if p := f.Position("a"); !p.Live {
		t.Errorf("default offset should be live: %+v", p)
	}
	// A bad offset is refused whichever topic comes first, even when the
	// first has a "since" (it fell back to a full replay of the others).
	for _, frame := range []string{
		`{"type":"subscribe","topics":["a","b"],"since":{"a":"5-0"},"offset":"garbage"}`,
		`{"type":"subscribe","topics":["b","a"],"since":{"a":"5-0"},"offset":"garbage"}`,
		`{"type":"subscribe","topics":["a"],"since":{"a":"5-0"},"offset":"garbage"}`,
	} {
		if _, err := DecodeClientFrame([]byte(frame)); !errors.Is(err, ErrSubscription) {
			t.Errorf("%s: %v, want a subscription error", frame, err)
		}
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	m := Message{ID: ID{1795744358685, 3}, Topic: "notifications", Payload: json.RawMessage(`{"user_id":123,"message":"Hello"}`), Timestamp: timeZero}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = m.AppendFrame(buf[:0])
	}
}

// BenchmarkFrame: a frame as the topic actor makes one per message, for the
// load generator's message.
func BenchmarkFrame(b *testing.B) {
	m := Message{ID: ID{1795744358685, 3}, Topic: "bench-17", Timestamp: timeZero,
		Payload: json.RawMessage(`{"seq":123456,"sent_ns":1732679000000000000,"pub":3,"pad":"0123456789abcdef0123456789abcdef"}`)}
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Frame()
	}
}

func TestPublishResponse(t *testing.T) {
	m := Message{ID: ID{5, 1}, Topic: "a.b", Timestamp: timeZero}
	var r map[string]string
	if err := json.Unmarshal(m.AppendPublishResponse(nil), &r); err != nil {
		t.Fatal(err)
	}
	if r["message_id"] != "5-1" || r["topic"] != "a.b" || r["timestamp"] != "2026-11-27T01:17:27.656581Z" || len(r) != 3 {
		t.Fatalf("publish response %v", r)
	}
}

// TestAppendTimeMatchesAppendFormat: the fixed-layout formatter writes what
// time.AppendFormat writes for TimestampLayout, across the range of dates,
// fractions and zones, and falls back to it outside years 0-9999.
func TestAppendTimeMatchesAppendFormat(t *testing.T) {
	zone := time.FixedZone("x", -7*3600-30*60)
	times := []time.Time{
		{}, // year 1
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2000, 2, 29, 12, 0, 0, 1000, time.UTC),
		time.Date(2026, 12, 1, 16, 59, 6, 656581123, zone),
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), // fallback
		time.Date(-1, 6, 1, 0, 0, 0, 0, time.UTC),    // fallback
		time.Now(),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		times = append(times, time.Unix(r.Int64N(1<<38)-1<<37, r.Int64N(1e9)).In(zone))
	}
	for _, tm := range times {
		want := tm.UTC().AppendFormat([]byte("x"), TimestampLayout)
		if got := AppendTime([]byte("x"), tm); string(got) != string(want) {
			t.Fatalf("AppendTime(%v) = %q, want %q", tm, got, want)
		}
		if got := FormatTime(tm); got != string(want[1:]) {
			t.Fatalf("FormatTime(%v) = %q, want %q", tm, got, want[1:])
		}
	}
}

// TestDecodePollBody: the common shapes (the load generator's, a client's
// first poll, one with every field) take the fast path; the rest
// (fractions, other spellings, escapes, trailing data) decode as
// encoding/json's Decoder decodes them; what neither takes is ErrInvalid.
func TestDecodePollBody(t *testing.T) {
	thirty, half := 30.0, 0.5
	for _, tc := range []struct {
		body string
		want PollBody
		fast bool
	}{
		{`{"topics":["jobs.42"],"since":{"jobs.42":"1795744358685-3"},"timeout":30}`,
			PollBody{Topics: []string{"jobs.42"}, Since: map[string]string{"jobs.42": "1795744358685-3"}, Timeout: &thirty}, true},
		{`{"topics": ["a", "b"]}`, PollBody{Topics: []string{"a", "b"}}, true},
		{"{\n \"timeout\": 30,\n \"topics\": [\"a\"]\n}\n", PollBody{Topics: []string{"a"}, Timeout: &thirty}, true},
		{`{"topics":["a"],"timeout":0.5}`, PollBody{Topics: []string{"a"}, Timeout: &half}, false},
		{`{"Topics":["a"]}`, PollBody{Topics: []string{"a"}}, false},
		{`{"topics":["\u0061"]}`, PollBody{Topics: []string{"a"}}, false},
		{`{"topics":["a"]} trailing`, PollBody{Topics: []string{"a"}}, false},
	} {
		_, fast := decodePollFast([]byte(tc.body))
		got, err := DecodePollBody([]byte(tc.body))
		if err != nil || fast != tc.fast || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DecodePollBody(%s) = %+v, %v (fast path %v); want %+v (fast path %v)", tc.body, got, err, fast, tc.want, tc.fast)
		}
	}
	for _, body := range []string{``, `[]`, `{"topics":`, `{"topics":"a"}`, `{"timeout":"30"}`} {
		if _, err := DecodePollBody([]byte(body)); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodePollBody(%q): %v, want ErrInvalid", body, err)
		}
	}
}
