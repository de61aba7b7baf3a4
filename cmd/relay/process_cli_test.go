package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/relaytest"
)

// cliProcess runs the relay binary as a client subcommand.
func cliProcess(t *testing.T, stdin string, args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer, chan error) {
	t.Helper()
	bin, err := buildRelay()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "RELAY_TOKEN=", "RELAY_URL=")
	out, errOut := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, errOut
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, out, errOut, done
}

func waitExit(t *testing.T, done chan error, errOut *syncBuffer) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("process did not exit; stderr:\n%s", errOut.String())
		return nil
	}
}

// TestProcessSubscribeStoppedAndRestarted runs the real binary: `relay
// subscribe --cursor-file` is stopped mid-stream while messages keep coming,
// then restarted. Stopped with SIGTERM, the two runs print every message
// exactly once. Killed with SIGKILL, nothing is lost or reordered; only the
// batch being printed at the kill may print again (the cursor file is
// renamed after stdout is flushed).
func TestProcessSubscribeStoppedAndRestarted(t *testing.T) {
	for _, c := range []struct {
		name        string
		sig         syscall.Signal
		exactlyOnce bool
	}{{"SIGTERM", syscall.SIGTERM, true}, {"SIGKILL", syscall.SIGKILL, false}} {
		t.Run(c.name, func(t *testing.T) {
			p := startProcess(t)
			url := "http://" + p.addr
			topic := "proc." + strings.ToLower(c.name)
			cursor := filepath.Join(t.TempDir(), "cursor")
			args := []string{"subscribe", "--url", url, "--cursor-file", cursor, "--from", "earliest", topic}

			cmd1, out1, err1, done1 := cliProcess(t, "", args...)
			pub := startPublisher(url, topic, 20000)
			relaytest.Eventually(t, 20*time.Second, "run 1 printing", func() bool { return countLines(out1.String()) >= 100 })
			_ = cmd1.Process.Signal(c.sig)
			err := waitExit(t, done1, err1)
			if c.exactlyOnce && err != nil {
				t.Fatalf("run 1 after SIGTERM: %v; stderr %s", err, err1.String())
			}
			stoppedAt := pub.count()
			relaytest.Eventually(t, 20*time.Second, "publishes while stopped", func() bool { return pub.count() >= stoppedAt+50 })

			cmd2, out2, err2, done2 := cliProcess(t, "", args...)
			relaytest.Eventually(t, 20*time.Second, "run 2 printing", func() bool { return countLines(out2.String()) >= 50 })
			ids := pub.finish(t)
			last := ids[len(ids)-1]
			relaytest.Eventually(t, 20*time.Second, "run 2 printing the last message", func() bool {
				return strings.Contains(out2.String(), `"message_id":"`+last+`"`)
			})
			_ = cmd2.Process.Signal(syscall.SIGTERM)
			if err := waitExit(t, done2, err2); err != nil {
				t.Fatalf("run 2: %v; stderr %s", err, err2.String())
			}

			// Run 1's output ends on a whole line only if it was stopped
			// between batches; SIGKILL may cut a line (never with bufio's
			// one write per batch below 64 KB, but do not rely on it).
			o1 := out1.String()
			if !c.exactlyOnce {
				o1 = o1[:strings.LastIndex(o1, "\n")+1]
			}
			m1, m2 := printed(t, o1), printed(t, out2.String())
			if c.exactlyOnce {
				var got []string
				for _, m := range append(m1, m2...) {
					got = append(got, m.MessageID)
				}
				if strings.Join(got, ",") != strings.Join(ids, ",") {
					t.Fatalf("printed %d (%d + %d), published %d; not the same sequence", len(got), len(m1), len(m2), len(ids))
				}
				return
			}
			// SIGKILL: run 2 starts at or before where run 1 stopped, and
			// together they print every message in order.
			if len(m2) == 0 || len(m1) > len(ids) {
				t.Fatalf("run 1 printed %d, run 2 %d, published %d", len(m1), len(m2), len(ids))
			}
			start := indexOf(ids, m2[0].MessageID)
			if start < 0 || start > len(m1) {
				t.Fatalf("run 2 starts at message %d, run 1 printed %d: a gap", start, len(m1))
			}
			for i, m := range m1 {
				if m.MessageID != ids[i] {
					t.Fatalf("run 1 message %d: %s, want %s", i, m.MessageID, ids[i])
				}
			}
			for i, m := range m2 {
				if start+i >= len(ids) || m.MessageID != ids[start+i] {
					t.Fatalf("run 2 message %d: %s, want %s", i, m.MessageID, ids[min(start+i, len(ids)-1)])
				}
			}
			if start+len(m2) != len(ids) {
				t.Fatalf("run 2 printed up to %d of %d", start+len(m2), len(ids))
			}
			t.Logf("after SIGKILL, %d messages printed again", len(m1)-start)
		})
	}
}

func indexOf(ids []string, id string) int {
	for i, v := range ids {
		if v == id {
			return i
		}
	}
	return -1
}

// TestProcessPublishStdin: `relay publish` through the binary, lines on
// stdin, ids on stdout, stored in order.
func TestProcessPublishStdin(t *testing.T) {
	p := startProcess(t)
	var in strings.Builder
	for i := 0; i < 250; i++ {
		fmt.Fprintf(&in, "{\"i\":%d}\n", i)
	}
	_, out, errOut, done := cliProcess(t, in.String(), "publish", "--url", "http://"+p.addr, "proc.publish")
	if err := waitExit(t, done, errOut); err != nil {
		t.Fatalf("publish: %v; stderr %s", err, errOut.String())
	}
	ids := strings.Fields(out.String())
	if len(ids) != 250 {
		t.Fatalf("printed %d ids", len(ids))
	}
	_, body := getJSON(t, "http://"+p.addr+"/api/v1/topics/proc.publish/messages?limit=1000")
	for i, id := range ids {
		if !strings.Contains(string(body), fmt.Sprintf(`"message_id":"%s","topic":"proc.publish","payload":{"i":%d}`, id, i)) {
			t.Fatalf("message %d (%s) not stored as printed", i, id)
		}
	}
	if errOut.String() != "" {
		t.Errorf("piped publish wrote to stderr: %q", errOut.String())
	}
}
