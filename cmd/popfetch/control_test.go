package main

import (
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// TestReadRequest: what a client writes on the control socket, hostile
// or old, is read within bounds.
func TestReadRequest(t *testing.T) {
	for _, tc := range []struct {
		name, send string
		close      bool // the client closes its side after sending
		op, err    string
	}{
		{name: "status", send: `{"op":"status"}` + "\n", op: opStatus},
		{name: "quit", send: `{"op":"quit"}` + "\n", op: opQuit},
		{name: "poll", send: `{"op":"poll","config":"/x/config.toml"}` + "\n", op: opPoll},
		{name: "empty op", send: `{}` + "\n", op: opStatus},
		{name: "an older client sends nothing", send: "", op: opStatus},
		{name: "nothing, then closes", send: "", close: true, op: opStatus},
		{name: "unknown op", send: `{"op":"\u001b[2Jrm -rf"}` + "\n", err: "unknown request"},
		{name: "not JSON", send: "quit\n", err: "not JSON"},
		{name: "no newline", send: `{"op":"quit"}`, close: true, err: "not one line"},
		{name: "too long", send: `{"op":"poll","config":"` + strings.Repeat("a", 5000) + `"}` + "\n", err: "not one line"},
		{name: "NUL bytes", send: "\x00\x00\x00\n", err: "not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer server.Close()
			go func() {
				client.Write([]byte(tc.send))
				if tc.close {
					client.Close()
				}
			}()
			defer client.Close()
			start := time.Now()
			req, err := readRequest(server)
			if time.Since(start) > requestWait+time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			switch {
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("err %v, want %q", err, tc.err)
			case tc.err == "" && (err != nil || req.Op != tc.op):
				t.Errorf("got %+v, %v; want op %q", req, err, tc.op)
			case err != nil && strings.Contains(err.Error(), "\x1b"):
				t.Errorf("error shows the client's bytes raw: %q", err)
			}
		})
	}
}

// TestWakeBoard: a wake counts only polls that start after it, ends when
// every account has polled or been skipped, and reports the rest when cut
// short.
func TestWakeBoard(t *testing.T) {
	b := &wakeBoard{}
	before := time.Now()
	r := b.add([]string{"a", "b", "c"})
	after := time.Now()
	b.finished("a", before.Add(-time.Second), fetch.Stats{Delivered: 3}, nil) // started before the wake
	b.finished("a", after, fetch.Stats{Delivered: 2}, nil)
	b.finished("zzz", after, fetch.Stats{}, nil)
	b.skip(r, "c", "LOGIN-DELAY", exitServer)
	select {
	case <-r.done:
		t.Fatal("done before b polled")
	default:
	}
	b.finished("b", after, fetch.Stats{}, &fetch.Error{Account: "b", Kind: fetch.KindAuth, Err: errors.New("refused")})
	select {
	case <-r.done:
	default:
		t.Fatal("not done after every account")
	}
	polled, skipped := b.end(r, "unused", exitSocket)
	if len(polled) != 2 || polled[0].Name != "a" || polled[0].Code != exitMail || !strings.Contains(polled[0].Summary, "2 delivered") ||
		polled[1].Code != exitAuth || !strings.Contains(polled[1].Error, "refused") {
		t.Errorf("polled %+v", polled)
	}
	if len(skipped) != 1 || skipped[0].Name != "c" || skipped[0].Code != exitServer {
		t.Errorf("skipped %+v", skipped)
	}
	if len(b.reqs) != 0 {
		t.Errorf("%d wakes left waiting", len(b.reqs))
	}

	r = b.add([]string{"x", "y"})
	b.finished("x", time.Now(), fetch.Stats{LimitReached: true}, nil)
	polled, skipped = b.end(r, "the daemon is stopping", exitInterrupted)
	if len(polled) != 1 || polled[0].Code != exitFetchLimit || len(skipped) != 1 || skipped[0].Reason != "the daemon is stopping" || skipped[0].Code != exitInterrupted {
		t.Errorf("cut short: %+v %+v", polled, skipped)
	}
	b.finished("y", time.Now(), fetch.Stats{}, nil) // after the end: nothing waits
	if r := b.add(nil); r.done == nil {
		t.Error("an empty wake")
	} else {
		<-r.done
	}
}

// TestOptionsCheck: contradicting flags are refused with a clear error.
func TestOptionsCheck(t *testing.T) {
	for _, o := range []options{{keep: true, nokeep: true}, {logFile: "x", syslog: true}} {
		var u usageError
		if err := o.check(); !errors.As(err, &u) || exitCodeOf(err) != exitConfig {
			t.Errorf("%+v: %v", o, err)
		}
	}
	if err := (options{keep: true, syslog: true}).check(); err != nil {
		t.Error(err)
	}
}

// TestDaemonWakeAndQuitInProcess: the wake and --quit, with the daemon in
// this process, where the race detector sees both sides.
func TestDaemonWakeAndQuitInProcess(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 1, "interval = 3600\n")
	d := f.startDaemon("daemon")
	d.waitFor("the first poll", func() bool { return f.countMaildir() == 1 })
	f.srv.Add(pop3test.Message{UID: "w", Data: []byte("Subject: w\n\nw\n")})
	code, _, stderr := f.run("--lock-timeout", "30s")
	if code != exitMail || f.countMaildir() != 2 || !strings.Contains(stderr, "test: 1 message on the server, 1 new, 1 delivered") {
		t.Errorf("wake: exit %d, %d delivered, %s", code, f.countMaildir(), stderr)
	}
	// Two wakes at once (two processes: urfave/cli's parsing is not safe
	// to run twice at once in one) are answered by the same poll or the
	// next.
	bin := popfetchBinary(t)
	results := make(chan int, 2)
	for range 2 {
		go func() {
			cmd := exec.Command(bin, "--config", f.config, "--state-dir", f.stateDir, "--lock-timeout", "30s")
			cmd.Env = binEnv()
			cmd.Run()
			results <- cmd.ProcessState.ExitCode()
		}()
	}
	for range 2 {
		if code := <-results; code != exitNoMail {
			t.Errorf("concurrent wake: exit %d", code)
		}
	}
	code, _, stderr = f.run("--quit")
	if code != exitMail || !strings.Contains(stderr, "has stopped") {
		t.Errorf("--quit: exit %d, %s", code, stderr)
	}
	select {
	case code := <-d.done:
		d.done <- code
		if code != exitMail {
			t.Errorf("daemon exit %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Error("the daemon did not end after --quit returned")
	}
	if !strings.Contains(d.stderr.String(), "as popfetch --quit asked") {
		t.Errorf("daemon log:\n%s", d.stderr.String())
	}
}
