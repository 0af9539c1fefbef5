package main

// The fault-injection suite's cases that need the popfetch process itself:
// SIGKILL at random moments, and a state file locked, damaged or out of
// reach. See also fetch/faults_test.go.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
	"github.com/popfetch/popfetch/uidstore"
)

// killLoop is one place for the kill loop to fetch from: a mailbox of n
// messages that it can fill anew, and a config that points at it.
type killLoop struct {
	t       *testing.T
	bin     string
	dir     string // per iteration: config, state and Maildir
	config  string
	maildir string
	sent    map[string][]byte // by Message-ID
	left    func() int        // messages left on the server
	done    func()            // if set, releases the server after the iteration
	// For a target other than the Maildir: progress counts the messages
	// delivered so far, each calls fn for every message delivered.
	progress func() int
	each     func(fn func(name string, body []byte))
	// key tells the messages apart (nil: by Message-ID); sent is keyed
	// by it too.
	key func(body []byte) string
	// rounds is how many runs are killed, one after another, before the
	// clean run (0: one).
	rounds int
	// afterKill, if set, is called after each run that was killed.
	afterKill func()
	// excused, if set, says which duplicates the target's documentation
	// allows (see check): a message without a Message-ID, say. Those are
	// counted in allowed, not as duplicates.
	excused func(got map[string]int) int
	allowed int
}

// keyOf is how k tells a message apart.
func (k *killLoop) keyOf(body []byte) string {
	if k.key != nil {
		return k.key(body)
	}
	return messageID(body)
}

// delivered counts the messages delivered so far.
func (k *killLoop) delivered() int {
	if k.progress != nil {
		return k.progress()
	}
	return countDir(filepath.Join(k.maildir, "new"))
}

// runKill starts popfetch and kills it with SIGKILL once the Maildir's
// new/ holds at least target messages, jitter later (if it is still
// running). It returns whether it was killed, and how many messages were
// in new/ at that moment. Aiming at a point of progress, not a time, lands
// every kill inside the fetch however fast the machine is that day.
func (k *killLoop) runKill(target int, jitter time.Duration) (bool, int) {
	k.t.Helper()
	cmd := exec.Command(k.bin, "--config", k.config, "--state-dir", filepath.Join(k.dir, "state"), "-q")
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
	for k.delivered() < target {
		select {
		case <-done:
			return false, 0
		case <-deadline:
			cmd.Process.Kill()
			k.t.Fatal("popfetch made no progress")
		case <-time.After(500 * time.Microsecond):
		}
	}
	select {
	case <-done:
		return false, 0
	case <-time.After(jitter):
	}
	cmd.Process.Signal(syscall.SIGKILL)
	err := <-done
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false, 0 // it ended on its own just before
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return false, 0
	}
	return true, k.delivered()
}

// countDir counts the entries of dir (0 if it does not exist yet).
func countDir(dir string) int {
	d, err := os.Open(dir)
	if err != nil {
		return 0
	}
	defer d.Close()
	n := 0
	for {
		names, err := d.Readdirnames(4096)
		n += len(names)
		if err != nil {
			return n
		}
	}
}

var foundDeliveredRE = regexp.MustCompile(`(\d+) found delivered by an interrupted run`)

// rerun runs popfetch until a run succeeds (at most 5; a server may hold
// the killed session's lock for a moment) and returns how many pending
// deliveries the runs found had arrived.
func (k *killLoop) rerun() int {
	k.t.Helper()
	recovered := 0
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, k.bin, "--config", k.config, "--state-dir", filepath.Join(k.dir, "state"))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Run()
		cancel()
		if m := foundDeliveredRE.FindStringSubmatch(out.String()); m != nil {
			n, _ := strconv.Atoi(m[1])
			recovered += n
		}
		if code := cmd.ProcessState.ExitCode(); code == exitMail || code == exitNoMail {
			return recovered
		}
		time.Sleep(200 * time.Millisecond)
	}
	k.t.Fatalf("no clean run after the kill")
	return 0
}

// check counts, across new/ and cur/, the messages lost and delivered
// twice, and the files left in tmp/.
func (k *killLoop) check() (lost, dups, tmp int) {
	k.t.Helper()
	got := map[string]int{}
	each := func(fn func(string, []byte)) { eachDelivered(k.t, k.maildir, fn) }
	if k.each != nil {
		each = k.each
	}
	each(func(name string, body []byte) {
		id := k.keyOf(body)
		if want, ok := k.sent[id]; !ok || !bytes.Equal(bytes.TrimRight(body, "\n"), bytes.TrimRight(want, "\n")) {
			k.t.Errorf("%s: a message that was not sent, or altered (%s)", name, id)
		}
		got[id]++
	})
	if k.excused != nil {
		n := k.excused(got)
		k.allowed += n
		dups -= n
	}
	for id := range k.sent {
		switch n := got[id]; {
		case n == 0:
			lost++
		case n > 1:
			dups += n - 1
		}
	}
	entries, _ := os.ReadDir(filepath.Join(k.maildir, "tmp"))
	return lost, dups, len(entries)
}

// killLoopMessages makes n messages of about size octets, each with its
// own Message-ID.
func killLoopMessages(n, size int, tag string) [][]byte {
	line := strings.Repeat("0123456789abcdef", 4) + "\n"
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf("From: sender@example.com\nMessage-ID: <%d.%s@popfetch.test>\nSubject: kill loop %d\n\n%s",
			i, tag, i, strings.Repeat(line, max(1, size/len(line)))))
	}
	return out
}

// killLoopIterations is at least 50, or $POPFETCH_KILL_ITERATIONS.
func killLoopIterations(t *testing.T, def int) int {
	if v := os.Getenv("POPFETCH_KILL_ITERATIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("POPFETCH_KILL_ITERATIONS=%q", v)
		}
		return n
	}
	return def
}

// runKillLoop runs the loop: per iteration a full mailbox, one popfetch
// killed at a random moment of its fetch, then clean runs; every message
// must arrive exactly once. It goes on until iterations runs were killed
// before they ended.
func runKillLoop(t *testing.T, iterations int, setup func(i int) *killLoop) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("POPFETCH_KILL_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	// Calibrate: how long does a whole fetch take?
	cal := setup(-1)
	start := time.Now()
	cal.rerun()
	full := time.Since(start)
	if lost, dups, _ := cal.check(); lost+dups > 0 {
		t.Fatalf("an uninterrupted fetch: %d lost, %d duplicates", lost, dups)
	}
	if cal.done != nil {
		cal.done()
	}
	// Runs that end before their kill do not count: iterate until
	// iterations runs were killed mid-fetch (at most three times as many
	// runs).
	var runs, killed, lost, dups, tmp, recovered int
	var progress []int
	for i := 0; killed < iterations && i < 3*iterations; i++ {
		runs++
		k := setup(i)
		var target int
		var jitter time.Duration
		var delivered int
		for range max(1, k.rounds) {
			// A random point of progress, and a random moment after
			// it: up to 100 ms at the start (connecting, logging in,
			// listing, settling what a killed run left pending), up to
			// 5 ms after a message (any step of its way).
			start := k.delivered()
			if start >= len(k.sent) {
				break
			}
			target = start + rng.IntN(len(k.sent)-start)
			jitter = time.Duration(rng.Int64N(int64(5 * time.Millisecond)))
			if target == start {
				jitter = time.Duration(rng.Int64N(int64(100 * time.Millisecond)))
			}
			var wasKilled bool
			wasKilled, delivered = k.runKill(target, jitter)
			if wasKilled {
				killed++
				progress = append(progress, delivered)
				if k.afterKill != nil {
					k.afterKill()
				}
			}
		}
		recovered += k.rerun()
		l, d, tm := k.check()
		if l+d > 0 || tm > 0 {
			t.Errorf("iteration %d (killed at %d+%v, %d delivered): %d lost, %d duplicates, %d in tmp/", i, target, jitter, delivered, l, d, tm)
		}
		if n := k.left(); n != 0 {
			t.Errorf("iteration %d: %d messages left on the server", i, n)
		}
		lost, dups, tmp = lost+l, dups+d, tmp+tm
		if k.done != nil {
			k.done()
		}
	}
	slices.Sort(progress)
	median := 0
	if len(progress) > 0 {
		median = progress[len(progress)/2]
	}
	t.Logf("KILL LOOP: %d runs (seed %d, a whole fetch %v); %d killed mid-fetch, with 0 to %d messages delivered (median %d) at the kill; "+
		"%d pending deliveries found delivered afterwards; %d lost, %d duplicates, %d files left in tmp/",
		runs, seed, full.Round(time.Millisecond), killed, slices.Max(append(progress, 0)), median, recovered, lost, dups, tmp)
	if killed < iterations {
		t.Errorf("only %d of %d runs were killed mid-fetch", killed, runs)
	}
}

// TestFaultKillLoop: SIGKILL of popfetch at a random moment of a
// 2000-message pipelined fetch from pop3test, at least 50 times, each
// followed by a clean run: every message arrives exactly once.
func TestFaultKillLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the kill loop")
	}
	bin := popfetchBinary(t)
	runKillLoop(t, killLoopIterations(t, 50), func(i int) *killLoop {
		msgs := killLoopMessages(2000, 1024, fmt.Sprintf("pop3test-%d", i))
		var pm []pop3test.Message
		k := &killLoop{t: t, bin: bin, dir: t.TempDir(), sent: map[string][]byte{}}
		for j, m := range msgs {
			pm = append(pm, pop3test.Message{UID: fmt.Sprintf("uid-%d", j), Data: m})
			k.sent[messageID(m)] = m
		}
		srv, err := pop3test.NewServer(pop3test.Config{User: "alice", Password: "wonderland", Pipelining: true}, pm...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		k.left = func() int { return len(srv.Messages()) }
		k.done = srv.Close
		k.config, k.maildir = filepath.Join(k.dir, "config.toml"), filepath.Join(k.dir, "Mail")
		if err := os.WriteFile(k.config, []byte(pop3testAccount("killed", srv.Addr(), k.maildir, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		return k
	})
}

// TestFaultKillLoopDovecot is the kill loop against the private Dovecot.
func TestFaultKillLoopDovecot(t *testing.T) {
	dc := startDovecot(t)
	runKillLoop(t, killLoopIterations(t, 50), func(i int) *killLoop {
		user := fmt.Sprintf("kill%d", i+1)
		e := newE2E(t, dc, user, "none", "")
		msgs := killLoopMessages(2000, 1024, user)
		if err := dc.Deliver(user, msgs...); err != nil {
			t.Fatal(err)
		}
		if _, err := dc.Index(context.Background(), user, "pw-"+user); err != nil {
			t.Fatalf("index: %v", err)
		}
		k := &killLoop{t: t, bin: e.bin, dir: e.dir, config: e.config, maildir: e.maildir, sent: map[string][]byte{},
			left: func() int { return dc.Count(user) }}
		for _, m := range msgs {
			k.sent[messageID(m)] = m
		}
		return k
	})
}

// TestFaultStateFile: the state file locked by another process, cut
// short, filled with garbage, or out of reach: the run stops before it
// fetches or deletes anything, with the exit code and remedy documented,
// and the repair path (export, move aside, import) fetches nothing again.
func TestFaultStateFile(t *testing.T) {
	bin := popfetchBinary(t)
	setup := func(t *testing.T) (*cliFixture, string, func(args ...string) (int, string)) {
		f := newCLIFixture(t, pop3test.Config{Pipelining: true}, 5, "keep = true")
		if code, _, stderr := f.run(); code != exitMail {
			t.Fatalf("first fetch: exit %d\n%s", code, stderr)
		}
		f.srv.Add(pop3test.Message{UID: "later", Data: []byte("Subject: later\n\nnew mail\n")})
		run := func(args ...string) (int, string) {
			full := append([]string{"--config", f.config, "--state-dir", f.stateDir, "--lock-timeout", "300ms"}, args...)
			cmd := exec.Command(bin, full...)
			out, _ := cmd.CombinedOutput()
			return cmd.ProcessState.ExitCode(), string(out)
		}
		return f, filepath.Join(f.stateDir, "uids.db"), run
	}
	untouched := func(t *testing.T, f *cliFixture) {
		t.Helper()
		if n := f.countMaildir(); n != 5 {
			t.Errorf("%d messages in the Maildir, want the 5 of the first fetch", n)
		}
		if f.srv.Count("RETR") != 5 || f.srv.Count("DELE") != 0 {
			t.Errorf("RETR %d, DELE %d after the first fetch's 5 and 0", f.srv.Count("RETR"), f.srv.Count("DELE"))
		}
	}

	t.Run("locked by another process", func(t *testing.T) {
		f, path, run := setup(t)
		holder, err := uidstore.Open(path, time.Second) // this test process holds it
		if err != nil {
			t.Fatal(err)
		}
		code, out := run()
		holder.Close()
		if code != exitStateLocked || !strings.Contains(out, "another popfetch holds the state") {
			t.Fatalf("exit %d, want %d\n%s", code, exitStateLocked, out)
		}
		untouched(t, f)
		if code, out := run(); code != exitMail || f.countMaildir() != 6 {
			t.Fatalf("after the lock is gone: exit %d, %d messages\n%s", code, f.countMaildir(), out)
		}
	})

	damage := map[string]func(data []byte) []byte{
		"truncated": func(d []byte) []byte {
			// Cut inside the pages in use (the meta pages' high-water mark).
			hwm := max(binary.NativeEndian.Uint64(d[16+40:]), binary.NativeEndian.Uint64(d[4096+16+40:]))
			return d[:(hwm-1)*4096]
		},
		"cut to its header":     func(d []byte) []byte { return d[:8192] },
		"filled with garbage":   func(d []byte) []byte { return bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, len(d)/4) },
		"overwritten by a text": func([]byte) []byte { return []byte("u1\nu2\n") },
		"empty":                 func([]byte) []byte { return nil },
		"header pages garbled":  func(d []byte) []byte { copy(d, bytes.Repeat([]byte{0x55}, 8192)); return d },
	}
	for name, fn := range damage {
		t.Run(name, func(t *testing.T) {
			f, path, run := setup(t)
			code, backup := run("uidl", "export", "test")
			if code != exitMail || strings.Count(backup, "\n") != 5 {
				t.Fatalf("export: exit %d\n%s", code, backup)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, fn(data), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{nil, {"check"}, {"uidl", "export", "test"}} {
				code, out := run(args...)
				if code != exitInternal || !strings.Contains(out, "mv "+path) || strings.Contains(out, "panic") {
					t.Errorf("%q: exit %d, want %d with the remedy\n%s", args, code, exitInternal, out)
				}
			}
			untouched(t, f)
			// The repair: move it aside, import the export, fetch.
			if err := os.Rename(path, path+".damaged"); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "--config", f.config, "--state-dir", f.stateDir, "uidl", "import", "test")
			cmd.Stdin = strings.NewReader(backup)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("import: %v\n%s", err, out)
			}
			if code, out := run(); code != exitMail || f.countMaildir() != 6 || f.srv.Count("RETR") != 6 {
				t.Fatalf("after the repair: exit %d, %d messages, %d RETR\n%s", code, f.countMaildir(), f.srv.Count("RETR"), out)
			}
		})
	}

	t.Run("not accessible", func(t *testing.T) {
		if os.Geteuid() != 0 {
			if os.Getenv("CI") == "true" {
				t.Fatal("CI must run this case as root (it runs popfetch as nobody)")
			}
			t.Skip("SKIPPED: needs root, to run popfetch as another user")
		}
		f, _, _ := setup(t)
		// The config belongs to nobody; the state stays root's (0700).
		for _, p := range []string{f.dir, filepath.Dir(f.dir)} { // t.TempDir's, 0700
			os.Chmod(p, 0o755)
		}
		os.Chown(f.config, 65534, 65534)
		os.Chown(filepath.Dir(f.maildir), 65534, 65534)
		os.Chmod(filepath.Dir(bin), 0o755)
		cmd := exec.Command(bin, "--config", f.config, "--state-dir", f.stateDir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Env = append(os.Environ(), "HOME=/nonexistent")
		out, _ := cmd.CombinedOutput()
		code := cmd.ProcessState.ExitCode()
		if code != exitPermissions || !strings.Contains(string(out), "permission denied") || !strings.Contains(string(out), "chmod 600") {
			t.Fatalf("exit %d, want %d with the remedy\n%s", code, exitPermissions, out)
		}
		untouched(t, f)
	})
}
