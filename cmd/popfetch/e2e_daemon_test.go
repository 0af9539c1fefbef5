package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/cmd/internal/delayline"
	"github.com/popfetch/popfetch/cmd/internal/dovecot"
)

// These tests run "popfetch daemon" as a process, with real signals,
// against the private Dovecot.

// daemonProc is a running popfetch daemon process.
type daemonProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func startDaemonProc(t *testing.T, bin string, args ...string) *daemonProc {
	t.Helper()
	p := &daemonProc{t: t, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	p.waitFor("the daemon to start", func() bool { return strings.Contains(p.out.String(), "daemon started") })
	return p
}

func (p *daemonProc) signal(sig os.Signal) {
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

func (p *daemonProc) waitFor(what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		select {
		case <-p.done:
			p.t.Fatalf("the daemon exited %d while waiting for %s\n%s", p.cmd.ProcessState.ExitCode(), what, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s\n%s", what, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// terminate sends SIGTERM and returns the exit code and how long the
// daemon took to exit.
func (p *daemonProc) terminate() (int, time.Duration) {
	p.t.Helper()
	start := time.Now()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), time.Since(start)
	case <-time.After(20 * time.Second):
		p.t.Fatalf("no exit 20 s after SIGTERM\n%s", p.out.String())
		return 0, 0
	}
}

// mailboxes is a set of Dovecot users, each fetched by popfetch into its
// own Maildir, through a delay line.
type mailboxes struct {
	t        *testing.T
	dc       *dovecot.Server
	line     *delayline.Line
	dir      string
	config   string
	stateDir string
	sent     map[string]int // user -> messages delivered to the server so far
}

func newMailboxes(t *testing.T, dc *dovecot.Server, oneWay time.Duration, users ...string) *mailboxes {
	t.Helper()
	pw := map[string]string{}
	for _, u := range users {
		pw[u] = "pw-" + u
	}
	if err := dc.AddUsers(pw); err != nil {
		t.Fatal(err)
	}
	line, err := delayline.New(dc.PlainAddr(), oneWay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(line.Close)
	dir := t.TempDir()
	return &mailboxes{t: t, dc: dc, line: line, dir: dir, config: filepath.Join(dir, "config.toml"),
		stateDir: filepath.Join(dir, "state"), sent: map[string]int{}}
}

func (m *mailboxes) maildir(user string) string { return filepath.Join(m.dir, "Mail", user) }

// deliver puts n messages of size octets on the server for user.
func (m *mailboxes) deliver(user string, n int, size int64) {
	m.t.Helper()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%d.%s@popfetch.test", m.sent[user], user)
		m.sent[user]++
		if err := m.dc.DeliverFrom(user, dovecot.Message(id, "daemon test", size)); err != nil {
			m.t.Fatal(err)
		}
	}
	if _, err := m.dc.Index(context.Background(), user, "pw-"+user); err != nil {
		m.t.Fatal(err)
	}
}

// writeConfig writes a configuration for users with the given extra
// lines in [defaults] and the [daemon] table.
func (m *mailboxes) writeConfig(daemon, defaults string, users ...string) {
	m.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[daemon]\n%s\n\n[defaults]\nserver = \"127.0.0.1\"\nport = %d\ntls = \"none\"\nallow_insecure_auth = true\n%s\n",
		daemon, m.line.Port(), defaults)
	for _, u := range users {
		fmt.Fprintf(&b, "\n[[account]]\nname = %q\nuser = %q\npassword = \"pw-%s\"\nmaildir = %q\n", u, u, u, m.maildir(u))
	}
	if err := os.WriteFile(m.config, []byte(b.String()), 0o600); err != nil {
		m.t.Fatal(err)
	}
}

var idRE = regexp.MustCompile(`(?m)^Message-ID: <([^>]+)>`)

// fetched returns how many distinct messages user's Maildir holds, and
// how many are there more than once.
func (m *mailboxes) fetched(user string) (distinct, dups int) {
	seen := map[string]bool{}
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(m.maildir(user), sub))
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(m.maildir(user), sub, e.Name()))
			if err != nil {
				continue
			}
			id := idRE.FindSubmatch(data)
			if id == nil {
				m.t.Errorf("%s: a message without Message-ID", e.Name())
				continue
			}
			if seen[string(id[1])] {
				dups++
			}
			seen[string(id[1])] = true
		}
	}
	return len(seen), dups
}

func (m *mailboxes) allFetched(users ...string) func() bool {
	return func() bool {
		for _, u := range users {
			if n, _ := m.fetched(u); n != m.sent[u] {
				return false
			}
		}
		return true
	}
}

func (m *mailboxes) args(cmd ...string) []string {
	return append([]string{"--config", m.config, "--state-dir", m.stateDir}, cmd...)
}

// run runs a one-shot popfetch command and returns its exit code and output.
func (m *mailboxes) run(bin string, cmd ...string) (int, string) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, m.args(cmd...)...).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		m.t.Fatal(err)
	}
	code := 0
	if exit != nil {
		code = exit.ExitCode()
	}
	return code, string(out)
}

func (m *mailboxes) status(bin string) statusFile {
	m.t.Helper()
	_, out := m.run(bin, "status", "--json")
	var st statusFile
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		m.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// TestDovecotDaemon runs the daemon for 8 accounts on one Dovecot: they
// are polled at once, mail that arrives later is picked up, SIGHUP adds
// an account and survives a broken file, a cron-style run beside the
// daemon works, and SIGTERM ends it with exit 0.
func TestDovecotDaemon(t *testing.T) {
	dc := startDovecot(t)
	bin := popfetchBinary(t)
	var users []string
	for i := range 9 {
		users = append(users, fmt.Sprintf("daemon%d", i))
	}
	m := newMailboxes(t, dc, 50*time.Millisecond, users...)
	eight := users[:8]
	for _, u := range eight {
		m.deliver(u, 10, 4<<10)
	}
	limits := "max_concurrent_polls = 8\nmax_sessions_per_server = 8"
	m.writeConfig(limits, "interval = 3600", eight...)
	// Half-second round trips make each first poll last longer than the
	// first poll's jitter (up to 2 s), so concurrent polls must overlap.
	m.line.SetDelay(250 * time.Millisecond)
	d := startDaemonProc(t, bin, m.args("daemon", "--log-format", "json")...)
	d.waitFor("the first polls", m.allFetched(eight...))
	m.line.SetDelay(50 * time.Millisecond)

	// Each account polled once so far: their polls overlapped.
	var st statusFile
	d.waitFor("the status of the first polls", func() bool {
		st = m.status(bin)
		for _, a := range st.Accounts {
			if a.Polls != 1 || a.Running {
				return false
			}
		}
		return len(st.Accounts) == 8
	})
	if !st.Running {
		t.Fatalf("status %+v", st)
	}
	overlap := 0
	for _, a := range st.Accounts {
		n := 0
		for _, b := range st.Accounts {
			if b.LastStart.Before(a.LastEnd) && a.LastStart.Before(b.LastEnd) {
				n++
			}
		}
		overlap = max(overlap, n)
	}
	t.Logf("8 accounts, 500 ms round trips: at most %d polls at once", overlap)
	if overlap < 6 {
		t.Errorf("at most %d polls ran at once; want the 8 accounts polled concurrently", overlap)
	}

	// A shorter interval, by SIGHUP; mail arriving later is picked up.
	m.writeConfig(limits, "interval = 1", eight...)
	d.signal(syscall.SIGHUP)
	for _, u := range eight {
		m.deliver(u, 3, 4<<10)
	}
	d.waitFor("mail that arrived between polls", m.allFetched(eight...))

	// A broken file is reported and the old configuration kept.
	good, _ := os.ReadFile(m.config)
	os.WriteFile(m.config, append(good, "\n[[account]]\nname = 'half'\n"...), 0o600)
	d.signal(syscall.SIGHUP)
	d.waitFor("the reload error", func() bool { return strings.Contains(d.out.String(), "keeping the old one") })
	m.deliver(eight[0], 1, 1<<10)
	d.waitFor("a poll under the old configuration", m.allFetched(eight[0]))

	// An added account.
	m.deliver(users[8], 5, 4<<10)
	m.writeConfig(limits, "interval = 1", users...)
	d.signal(syscall.SIGHUP)
	d.waitFor("the added account's mail", m.allFetched(users[8]))

	// Cron-style one-shot runs beside the daemon, while mail arrives.
	for i := range 3 {
		for _, u := range users[:3] {
			m.deliver(u, 2, 4<<10)
		}
		code, out := m.run(bin, "--lock-timeout", "30s")
		if code != exitMail && code != exitNoMail {
			t.Fatalf("one-shot run %d beside the daemon: exit %d\n%s", i, code, out)
		}
	}
	d.waitFor("everything", m.allFetched(users...))

	code, took := d.terminate()
	t.Logf("SIGTERM to exit: %v", took)
	if code != 0 || took > 10*time.Second {
		t.Errorf("SIGTERM: exit %d after %v", code, took)
	}
	for _, u := range users {
		n, dups := m.fetched(u)
		if n != m.sent[u] || dups != 0 || dc.Count(u) != 0 {
			t.Errorf("%s: %d of %d fetched, %d duplicates, %d left on the server", u, n, m.sent[u], dups, dc.Count(u))
		}
	}
	// The journal-friendly JSON log has one object a line.
	for _, line := range strings.Split(strings.TrimSpace(d.out.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON log line: %q", line)
			break
		}
	}
}

// TestDovecotDaemonSIGTERMDuringFetch stops the daemon with SIGTERM in the
// middle of a long fetch: it exits 0 within 10 s, what it delivered is
// committed, and a later run fetches the rest, each message exactly once.
// A one-shot run while the daemon holds the store gives up with exit 8.
func TestDovecotDaemonSIGTERMDuringFetch(t *testing.T) {
	dc := startDovecot(t)
	bin := popfetchBinary(t)
	m := newMailboxes(t, dc, 10*time.Millisecond, "long")
	const total = 300
	m.deliver("long", total, 64<<10)
	// One command at a time over 20 ms round trips: 300 messages take
	// six seconds or more.
	m.writeConfig("", "pipelining = \"off\"\ninterval = 3600", "long")
	d := startDaemonProc(t, bin, m.args("daemon")...)
	d.waitFor("the fetch to be under way", func() bool { n, _ := m.fetched("long"); return n >= 30 })

	// The account is named: a plain run would wake the daemon instead
	// (TestHabitsWakeDaemon) and wait for its poll.
	code, out := m.run(bin, "long", "--lock-timeout", "1s")
	if code != exitStateLocked || !strings.Contains(out, "popfetch") {
		t.Errorf("one-shot while the daemon fetches: exit %d\n%s", code, out)
	}

	code, took := d.terminate()
	before, dups := m.fetched("long")
	t.Logf("SIGTERM during a %d-message fetch: exit %d after %v, %d delivered before the stop", total, code, took, before)
	if code != 0 || took > 10*time.Second {
		t.Errorf("SIGTERM: exit %d after %v\n%s", code, took, d.out.String())
	}
	if before >= total || dups != 0 {
		t.Errorf("%d delivered, %d twice: the stop did not come mid-fetch, or duplicated", before, dups)
	}
	if !strings.Contains(d.out.String(), "stopping") {
		t.Errorf("the log does not mention the stop:\n%s", d.out.String())
	}
	// The delivered messages are recorded: the next run fetches only the
	// rest. Dovecot may hold the mailbox for the closed session briefly.
	var o string
	for i := 0; i < 20; i++ {
		if code, o = m.run(bin); code == exitMail {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if code != exitMail {
		t.Fatalf("the run after the stop: exit %d\n%s", code, o)
	}
	n, dups := m.fetched("long")
	if n != total || dups != 0 || dc.Count("long") != 0 {
		t.Errorf("%d of %d fetched, %d twice, %d left on the server", n, total, dups, dc.Count("long"))
	}
	if m := regexp.MustCompile(`(\d+) new`).FindStringSubmatch(o); m == nil || m[1] != fmt.Sprint(total-before) {
		t.Errorf("the rerun found %v new, want %d\n%s", m, total-before, o)
	}
}
