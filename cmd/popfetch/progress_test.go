package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

func TestProgressDisplay(t *testing.T) {
	var out bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := &progressDisplay{w: &out, width: 200, now: func() time.Time { return now }, polls: map[string]*pollProgress{}}

	// A poll shorter than a second draws nothing.
	d.Update(fetch.Progress{Account: "quick", Messages: 2, Bytes: 100})
	d.Update(fetch.Progress{Account: "quick", Messages: 2, Bytes: 100, Done: 2, DoneBytes: 100})
	d.Update(fetch.Progress{Account: "quick", Finished: true})
	if out.Len() != 0 {
		t.Fatalf("a short poll drew %q", out.String())
	}

	// Two long polls at once: a line each.
	d.Update(fetch.Progress{Account: "work", Messages: 2000, Bytes: 80 << 20})
	d.Update(fetch.Progress{Account: "home", Messages: 10, Bytes: 10 << 10})
	now = now.Add(2 * time.Second)
	d.Update(fetch.Progress{Account: "work", Messages: 2000, Bytes: 80 << 20, Done: 100, DoneBytes: 4 << 20})
	want := "popfetch: work: 100/2000 messages, 4.0 MiB of 80.0 MiB, 2.0 MiB/s, 38s left\npopfetch: home: 0/10 messages, 0 B of 10.0 KiB"
	if out.String() != want {
		t.Fatalf("drew %q\nwant %q", out.String(), want)
	}
	// A log line: the lines are cleared, the line written, the lines drawn again.
	out.Reset()
	io.WriteString(d, "popfetch: home: warning: something\n")
	if want := "\r\x1b[K\x1b[A\x1b[Kpopfetch: home: warning: something\npopfetch: work: 100/2000"; !strings.HasPrefix(out.String(), want) {
		t.Fatalf("log line: %q, want it to start %q", out.String(), want)
	}
	// Redraws are at most every progressEvery.
	out.Reset()
	now = now.Add(progressEvery / 2)
	d.Update(fetch.Progress{Account: "work", Messages: 2000, Bytes: 80 << 20, Done: 101, DoneBytes: 4<<20 + 1})
	if out.Len() != 0 {
		t.Errorf("redrew after %v: %q", progressEvery/2, out.String())
	}
	// A finished poll's line goes; Close clears the rest.
	now = now.Add(progressEvery)
	out.Reset()
	d.Update(fetch.Progress{Account: "home", Finished: true})
	if s := out.String(); strings.Contains(s, "home") || !strings.Contains(s, "work: 101/2000") {
		t.Errorf("after home finished: %q", s)
	}
	out.Reset()
	d.Close()
	if out.String() != "\r\x1b[K" {
		t.Errorf("Close wrote %q", out.String())
	}
	d.Update(fetch.Progress{Account: "work", Messages: 1})
	io.WriteString(d, "after\n")
	if !strings.HasSuffix(out.String(), "after\n") || strings.Contains(out.String(), "messages") {
		t.Errorf("drew after Close: %q", out.String())
	}
	// Lines are cut to the terminal's width.
	d2 := &progressDisplay{w: &out, width: 20, now: func() time.Time { return now }, polls: map[string]*pollProgress{}}
	d2.Update(fetch.Progress{Account: "work", Messages: 5})
	now = now.Add(2 * time.Second)
	out.Reset()
	d2.Update(fetch.Progress{Account: "work", Messages: 5, Done: 5})
	if out.String() != "popfetch: work: 5/5" {
		t.Errorf("cut line %q", out.String())
	}
}

// TestProgressOnTerminal runs popfetch with its standard error on a
// pseudo-terminal (as at a shell) and on a pipe (as under cron): progress
// lines on the terminal only, and not with -q.
func TestProgressOnTerminal(t *testing.T) {
	const n = 30
	f := newCLIFixture(t, pop3test.Config{}, n, "")
	// An MDA that takes a while makes the poll long enough to show.
	f.writeConfig(strings.Replace(pop3testAccount("slow", f.srv.Addr(), f.maildir, "timeout = \"5s\"\n"),
		fmt.Sprintf("maildir = %q", f.maildir), `mda = ["/bin/sh", "-c", "sleep 0.08; cat >/dev/null"]`, 1), 0o600)
	bin := popfetchBinary(t)
	run := func(t *testing.T, onTTY bool, args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		full := append([]string{"--config", f.config, "--state-dir", f.stateDir, "-a", "-k"}, args...)
		cmd := exec.CommandContext(ctx, bin, full...)
		var out bytes.Buffer
		var wg sync.WaitGroup
		if onTTY {
			ptmx, slave := openPTY(t)
			pts, err := os.OpenFile(slave, os.O_RDWR|syscall.O_NOCTTY, 0)
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stdout, cmd.Stderr = pts, pts
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(&out, ptmx) }()
			err = cmd.Run()
			pts.Close()
			time.Sleep(100 * time.Millisecond)
			ptmx.Close()
			wg.Wait()
			if err != nil {
				t.Fatalf("popfetch: %v\n%s", err, out.String())
			}
		} else {
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("popfetch: %v\n%s", err, out.String())
			}
		}
		return out.String()
	}
	t.Run("terminal", func(t *testing.T) {
		out := run(t, true)
		if !strings.Contains(out, "popfetch: slow: ") || !strings.Contains(out, fmt.Sprintf("/%d messages, ", n)) ||
			!strings.Contains(out, "B/s") || !strings.Contains(out, "\x1b[K") {
			t.Errorf("no progress line on a terminal:\n%q", out)
		}
		if !strings.Contains(out, fmt.Sprintf("%d delivered", n)) {
			t.Errorf("no summary:\n%q", out)
		}
	})
	t.Run("quiet", func(t *testing.T) {
		if out := run(t, true, "-q"); strings.Contains(out, "messages, ") || strings.Contains(out, "\x1b[") {
			t.Errorf("progress with -q:\n%q", out)
		}
	})
	t.Run("pipe", func(t *testing.T) {
		if out := run(t, false); strings.Contains(out, "messages, ") || strings.Contains(out, "\x1b[") {
			t.Errorf("progress on a pipe (cron):\n%q", out)
		}
	})
}
