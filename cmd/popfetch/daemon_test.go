package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
	"github.com/popfetch/popfetch/fetch/schedule"
)

// syncBuffer is a bytes.Buffer safe to read while the daemon writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// runningDaemon is "popfetch daemon" run in-process, with signals the
// test sends.
type runningDaemon struct {
	t      *testing.T
	stop   chan struct{}
	cancel context.CancelFunc
	sigs   map[os.Signal]chan os.Signal
	stderr *syncBuffer
	done   chan int
}

func (f *cliFixture) startDaemon(args ...string) *runningDaemon {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &runningDaemon{t: f.t, stop: make(chan struct{}), cancel: cancel, stderr: &syncBuffer{}, done: make(chan int, 1),
		sigs: map[os.Signal]chan os.Signal{syscall.SIGHUP: make(chan os.Signal, 1), syscall.SIGUSR1: make(chan os.Signal, 1)}}
	p := &proc{stop: d.stop, notify: func(sigs ...os.Signal) (<-chan os.Signal, func()) {
		return d.sigs[sigs[0]], func() {}
	}}
	full := append([]string{"popfetch", "--config", f.config, "--state-dir", f.stateDir}, args...)
	go func() { d.done <- run(ctx, p, full, &syncBuffer{}, d.stderr) }()
	f.t.Cleanup(func() { d.shutdown() })
	// urfave/cli's flag parsing writes package-level flags (HelpFlag):
	// let the daemon's app finish parsing before the test runs another.
	d.waitFor("the daemon to start", func() bool { return strings.Contains(d.stderr.String(), "daemon started") })
	return d
}

// signal sends sig to the daemon.
func (d *runningDaemon) signal(sig os.Signal) { d.sigs[sig] <- sig }

// shutdown asks the daemon to stop, as SIGTERM does, and returns its exit
// code and how long it took.
func (d *runningDaemon) shutdown() (int, time.Duration) {
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	start := time.Now()
	timer := time.AfterFunc(graceTimeout, d.cancel)
	defer timer.Stop()
	select {
	case code := <-d.done:
		d.done <- code
		return code, time.Since(start)
	case <-time.After(15 * time.Second):
		d.t.Fatalf("the daemon did not stop within 15 s\n%s", d.stderr.String())
		return 0, 0
	}
}

// waitFor waits up to 15 s for cond, failing with the daemon's log.
func (d *runningDaemon) waitFor(what string, cond func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		select {
		case code := <-d.done:
			d.done <- code
			d.t.Fatalf("the daemon exited %d while waiting for %s\n%s", code, what, d.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("timed out waiting for %s\n%s", what, d.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *cliFixture) status() (int, statusFile) {
	f.t.Helper()
	code, out, stderr := f.run("status", "--json")
	var st statusFile
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		f.t.Fatalf("status --json: %v\n%s%s", err, out, stderr)
	}
	return code, st
}

func TestDaemonPollsPicksUpNewMailAndStops(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{Pipelining: true}, 3, "interval = 1\n")
	d := f.startDaemon("daemon")
	d.waitFor("the first 3 messages", func() bool { return f.countMaildir() == 3 })
	f.srv.Add(pop3test.Message{UID: "late", Data: []byte("Subject: late\n\nlate\n")})
	d.waitFor("mail that arrived between polls", func() bool { return f.countMaildir() == 4 })

	// SIGUSR1 polls at once, long before the interval.
	f.writeConfig(strings.Replace(readFile(t, f.config), "interval = 1", "interval = 3600", 1), 0o600)
	d.signal(syscall.SIGHUP)
	d.waitFor("the reload", func() bool { return strings.Contains(d.stderr.String(), "configuration reloaded") })
	f.srv.Add(pop3test.Message{UID: "now", Data: []byte("Subject: now\n\nnow\n")})
	d.signal(syscall.SIGUSR1)
	d.waitFor("the poll SIGUSR1 asked for", func() bool { return f.countMaildir() == 5 })

	d.waitFor("the status file", func() bool {
		_, st := f.status()
		return len(st.Accounts) == 1 && st.Accounts[0].Fetched == 5
	})
	code, st := f.status()
	a := st.Accounts[0]
	if code != exitMail || !st.Running || st.PID != os.Getpid() || a.Name != "test" || a.LastResult != "ok" ||
		a.Polls < 3 || a.Next.IsZero() || st.Goroutines == 0 || st.Memory == 0 {
		t.Errorf("status exit %d: %+v", code, st)
	}
	if _, out, _ := f.run("status"); !strings.Contains(out, "running, pid") || !strings.Contains(out, "test ") {
		t.Errorf("status:\n%s", out)
	}
	// The daemon answered on its socket, for this user alone; the file,
	// written at the start and once a minute, still tells of no poll.
	if fi, err := os.Stat(socketPath(f.stateDir)); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("status socket: %v, %v", fi, err)
	}
	var file statusFile
	if err := json.Unmarshal([]byte(readFile(t, statusPath(f.stateDir))), &file); err != nil || len(file.Accounts) != 1 || file.Accounts[0].Polls != 0 {
		t.Errorf("status file before the stop: %v, %+v", err, file)
	}

	if code, took := d.shutdown(); code != exitMail || took > 10*time.Second {
		t.Errorf("stop: exit %d after %v", code, took)
	}
	code, st = f.status()
	if code != exitNoMail || st.Running || st.Stopped.IsZero() || st.Accounts[0].Fetched != 5 {
		t.Errorf("after the stop: exit %d, %+v", code, st)
	}
	if _, err := os.Stat(socketPath(f.stateDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the status socket outlived the daemon: %v", err)
	}
	if len(f.srv.Messages()) != 0 {
		t.Errorf("server still holds %d", len(f.srv.Messages()))
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestDaemonOneInstance: a second daemon on one state directory exits 8
// and says who holds it; a one-shot run beside the daemon gets the store
// between polls.
func TestDaemonOneInstance(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 2, "interval = 1\n")
	d := f.startDaemon("daemon")
	d.waitFor("the first poll", func() bool { return f.countMaildir() == 2 })
	code, _, stderr := f.run("daemon")
	if code != exitStateLocked || !strings.Contains(stderr, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("second daemon: exit %d, %s", code, stderr)
	}
	f.srv.Add(pop3test.Message{UID: "x", Data: []byte("Subject: x\n\nx\n")})
	for i := 0; i < 5; i++ {
		code, _, stderr = f.run("--lock-timeout", "5s")
		if code != exitMail && code != exitNoMail {
			t.Fatalf("one-shot beside the daemon: exit %d, %s", code, stderr)
		}
	}
	d.waitFor("the message", func() bool { return f.countMaildir() == 3 })
	d.shutdown()
	if n := f.countMaildir(); n != 3 {
		t.Errorf("%d messages, want 3 (no duplicates)", n)
	}
}

// TestDaemonReload: SIGHUP with a broken file keeps the running
// configuration; with an added account it polls that too.
func TestDaemonReload(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 1, "interval = 1\n")
	d := f.startDaemon("daemon")
	d.waitFor("the first poll", func() bool { return f.countMaildir() == 1 })
	good := readFile(t, f.config)

	f.writeConfig(good+"\n[[account]\nbroken", 0o600)
	d.signal(syscall.SIGHUP)
	d.waitFor("the reload error", func() bool { return strings.Contains(d.stderr.String(), "keeping the old one") })
	f.srv.Add(pop3test.Message{UID: "after", Data: []byte("Subject: after\n\nafter\n")})
	d.waitFor("a poll with the old configuration", func() bool { return f.countMaildir() == 2 })

	other, err := pop3test.NewServer(pop3test.Config{User: "bob", Password: "builder"},
		pop3test.Message{UID: "b1", Data: []byte("Subject: for bob\n\nb\n")})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	host, port, _ := strings.Cut(other.Addr(), ":")
	bobDir := filepath.Join(f.dir, "Bob")
	f.writeConfig(good+fmt.Sprintf(`
[[account]]
name = "bob"
server = %q
port = %s
tls = "none"
allow_insecure_auth = true
user = "bob"
password = "builder"
maildir = %q
interval = 1
`, host, port, bobDir), 0o600)
	d.signal(syscall.SIGHUP)
	d.waitFor("the added account's mail", func() bool {
		entries, _ := os.ReadDir(filepath.Join(bobDir, "new"))
		return len(entries) == 1
	})
	if !strings.Contains(d.stderr.String(), "added=bob") {
		t.Errorf("reload not logged:\n%s", d.stderr.String())
	}
	d.shutdown()
}

// TestDaemonAuthFailureLoggedOnce: a wrong password is logged once, not at
// every poll, and the status shows the streak.
func TestDaemonAuthFailureLoggedOnce(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 1, "interval = 1\n[daemon]\nmax_backoff = 1\n")
	f.writeConfig(strings.Replace(readFile(t, f.config), `password = "wonderland"`, `password = "wrong"`, 1), 0o600)
	d := f.startDaemon("daemon")
	d.waitFor("three failed polls", func() bool {
		_, st := f.status()
		return len(st.Accounts) == 1 && st.Accounts[0].Failures >= 3
	})
	log := d.stderr.String()
	if n := strings.Count(log, "authentication failed"); n != 1 {
		t.Errorf("the failure was logged %d times:\n%s", n, log)
	}
	if !strings.Contains(log, "SIGHUP") {
		t.Errorf("the log does not say how to retry:\n%s", log)
	}
	_, st := f.status()
	if a := st.Accounts[0]; a.LastResult != "authentication failed" || a.Backoff == 0 || !strings.Contains(a.LastError, "PASS") {
		t.Errorf("status %+v", a)
	}
	// Fixing the password and reloading retries at once.
	f.writeConfig(strings.Replace(readFile(t, f.config), `password = "wrong"`, `password = "wonderland"`, 1), 0o600)
	d.signal(syscall.SIGHUP)
	d.waitFor("the message", func() bool { return f.countMaildir() == 1 })
	d.waitFor("the recovery", func() bool { return strings.Contains(d.stderr.String(), "polling works again") })
	d.shutdown()
}

func TestDaemonFlag(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 1, "")
	if code, _, stderr := f.run("-d", "soon"); code != exitConfig || !strings.Contains(stderr, "-d") {
		t.Errorf("-d soon: exit %d %s", code, stderr)
	}
	if code, _, stderr := f.run("daemon", "--interval", "10ms"); code != exitConfig || !strings.Contains(stderr, "shorter than a second") {
		t.Errorf("--interval 10ms: exit %d %s", code, stderr)
	}
	// -d 0 is a single poll, as in fetchmail.
	if code, _, stderr := f.run("-d", "0"); code != exitMail || f.countMaildir() != 1 {
		t.Fatalf("-d 0: exit %d %s", code, stderr)
	}
	f.srv.Add(pop3test.Message{UID: "x", Data: []byte("Subject: x\n\nx\n")})
	d := f.startDaemon("-d", "1", "-N", "test") // -N: in this process, not detached
	d.waitFor("the daemon's poll", func() bool { return f.countMaildir() == 2 })
	_, st := f.status()
	if len(st.Accounts) != 1 || st.Accounts[0].Name != "test" {
		t.Errorf("status %+v", st)
	}
	d.shutdown()
}

// TestDaemonSystemd: readiness and stopping reach $NOTIFY_SOCKET, and the
// watchdog is fed.
func TestDaemonSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "400000") // a keep-alive every 200 ms
	t.Setenv("WATCHDOG_PID", "")
	f := newCLIFixture(t, pop3test.Config{}, 1, "interval = 3600\n")
	d := f.startDaemon("daemon")
	got := make(chan string, 100)
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()
	var seen []string
	want := func(prefix string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case m := <-got:
				seen = append(seen, m)
				if strings.HasPrefix(m, prefix) {
					return
				}
			case <-timeout:
				t.Fatalf("no %s; got %q", prefix, seen)
			}
		}
	}
	want("READY=1\nSTATUS=polling 1 account")
	want("WATCHDOG=1")
	want("WATCHDOG=1")
	d.signal(syscall.SIGHUP)
	want("RELOADING=1")
	want("READY=1")
	d.shutdown()
	want("STOPPING=1")
}

func TestPrintStatus(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.Local)
	st := statusFile{PID: 42, Running: true, Started: now.Add(-2 * time.Hour), Goroutines: 12, Memory: 8 << 20,
		Accounts: []schedule.JobStatus{
			{Name: "work", LastEnd: now.Add(-5 * time.Second), LastResult: "ok", LastFetched: 3, LastBytes: 12 << 10,
				Fetched: 120, Bytes: 5 << 20, Next: now.Add(4 * time.Minute)},
			{Name: "home", LastEnd: now.Add(-time.Minute), LastResult: "authentication failed", Failures: 4,
				LastError: "pop3: PASS: -ERR [AUTH] invalid", Next: now.Add(59 * time.Minute), Backoff: time.Hour},
			{Name: "new", Running: true},
			{Name: "slowpop", LastEnd: now.Add(-time.Minute), LastResult: "ok", Next: now.Add(14 * time.Minute), LoginDelay: 15 * time.Minute},
		}}
	var b bytes.Buffer
	printStatus(&b, st, now)
	for _, want := range []string{
		"running, pid 42, since", "(2h0m0s ago); 12 goroutines, 8.0 MiB",
		"work     11:59:55 (5s ago)", "3 (12.0 KiB)", "120 (5.0 MiB)", "in 4m0s",
		"authentication failed (4 in a row)", "in 59m0s (backoff)", "-ERR [AUTH] invalid",
		"new      polling now", "in 14m0s (server's LOGIN-DELAY 15m0s)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

func TestLogFormats(t *testing.T) {
	var b bytes.Buffer
	log, err := newLogger(&b, logJSON, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	log.With("account", "work").Error("boom", "n", 1)
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil || rec["msg"] != "boom" || rec["account"] != "work" || rec["level"] != "ERROR" {
		t.Errorf("json line %q: %v", b.String(), err)
	}
	if _, err := newLogger(&b, "xml", 0, false); err == nil {
		t.Error("an unknown format was accepted")
	}

	// Under journald: priorities, no time, no "popfetch: " prefix.
	f, err := os.CreateTemp(t.TempDir(), "journal")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stat syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &stat); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", stat.Dev, stat.Ino))
	log, _ = newLogger(f, logAuto, 0, true)
	log.With("account", "work").Warn("slow")
	log.Info("multi\nline")
	if got := readFile(t, f.Name()); got != "<4>work: warning: slow\n<6>multi line\n" {
		t.Errorf("journal lines %q", got)
	}
	// Another file, with the variable inherited: human lines with times.
	var h bytes.Buffer
	log, _ = newLogger(&h, logAuto, 0, true)
	log.Info("hello")
	if !strings.HasSuffix(h.String(), " popfetch: hello\n") || !strings.HasPrefix(h.String(), "20") {
		t.Errorf("daemon line %q", h.String())
	}
}

// TestDaemonMemoSurvivesReload: what the daemon learned of a server (here,
// that it refuses APOP and takes USER/PASS) survives a SIGHUP that leaves
// the account's configuration as it was: APOP is tried once, and the
// fallback is logged once.
func TestDaemonMemoSurvivesReload(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{Quirks: pop3test.Quirks{APOPNoSecret: true}}, 1, "interval = 1\n")
	d := f.startDaemon("daemon")
	d.waitFor("two polls", func() bool { return f.srv.Count("PASS") >= 2 })
	d.signal(syscall.SIGHUP)
	passes := f.srv.Count("PASS")
	d.waitFor("two polls after the reload", func() bool { return f.srv.Count("PASS") >= passes+2 })
	d.shutdown()
	if n := f.srv.Count("APOP"); n != 1 {
		t.Errorf("APOP tried %d times", n)
	}
	if n := strings.Count(d.stderr.String(), "after the server refused APOP"); n != 1 {
		t.Errorf("the fallback logged %d times:\n%s", n, d.stderr.String())
	}
}
