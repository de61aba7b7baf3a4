package loadgen

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// comm with spaces and a ')' inside: fields must be counted from the last ')'.
	stat := "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 130 0 0 20 0 12 0 100 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3800 * time.Millisecond; got != want {
		t.Fatalf("cpu = %v, want %v (250+130 ticks)", got, want)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 x y 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q): want an error", bad)
		}
	}
}

func TestParseStatusRSS(t *testing.T) {
	status := "Name:\trelay\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t7\n"
	got, err := parseStatusRSS([]byte(status))
	if err != nil || got != 12345 {
		t.Fatalf("rss = %d, %v; want 12345", got, err)
	}
	if _, err := parseStatusRSS([]byte("Name:\tzombie\n")); err == nil {
		t.Fatal("no VmRSS line: want an error")
	}
}

func TestReadProcSelf(t *testing.T) {
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if s.RSSKB <= 0 {
		t.Fatalf("own RSS = %d KB", s.RSSKB)
	}
	if l := readLoadAvg(); l < 0 {
		t.Fatalf("load average %g", l)
	}
	if _, err := readProc(1 << 30); err == nil {
		t.Fatal("readProc of a missing pid: want an error")
	}
}
