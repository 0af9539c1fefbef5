package main

// fetchmail's habits, through the built binary: -d detaches, --quit stops
// the daemon, a plain run wakes it, -K, -s, -c, -L and --syslog; and a
// failed reload in "popfetch status".

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// binEnv is the environment for the binary: no systemd (it would not
// detach) and no popfetch settings from the caller.
func binEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "INVOCATION_ID", k == "NOTIFY_SOCKET", k == "JOURNAL_STREAM", strings.HasPrefix(k, "POPFETCH_"):
			continue
		}
		env = append(env, kv)
	}
	return env
}

// runBin runs the built binary with the fixture's config and state
// directory and returns its exit code, standard output and error, and how
// long it took.
func (f *cliFixture) runBin(args ...string) (int, string, string, time.Duration) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append([]string{"--config", f.config, "--state-dir", f.stateDir}, args...)
	cmd := exec.CommandContext(ctx, popfetchBinary(f.t), full...)
	cmd.Env = binEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		f.t.Fatalf("popfetch %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String(), took
}

// waitUntil waits up to 20 s for cond.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quitDaemon stops a daemon a test started, if it still runs.
func (f *cliFixture) quitDaemon() {
	if _, running := daemonRunning(f.stateDir); running {
		f.runBin("--quit")
	}
}

// TestHabitsDetachAndQuit: "popfetch -d" returns once the daemon runs in
// the background, logging to STATE/daemon.log; "popfetch --quit" stops it
// and waits for it to end (exit 0), and exits 1 when none runs, also when
// a dead daemon left its socket and PID file behind.
func TestHabitsDetachAndQuit(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 2, "interval = 3600\n")
	t.Cleanup(f.quitDaemon)
	code, stdout, stderr, took := f.runBin("-d", "3600")
	if code != exitMail || !strings.Contains(stderr, "daemon started, pid") || stdout != "" || took > 15*time.Second {
		t.Fatalf("-d: exit %d after %v\n%s%s", code, took, stdout, stderr)
	}
	pid, running := daemonRunning(f.stateDir)
	if !running || pid <= 0 || !strings.Contains(stderr, fmt.Sprintf("pid %d,", pid)) {
		t.Fatalf("after -d: running %v, pid %d: %s", running, pid, stderr)
	}
	waitUntil(t, "the detached daemon's first poll", func() bool { return f.countMaildir() == 2 })
	// In a session of its own, away from the terminal.
	if sid, err := getsid(pid); err != nil || sid != pid {
		t.Errorf("daemon pid %d: session %d, %v", pid, sid, err)
	}
	log := readFile(t, filepath.Join(f.stateDir, "daemon.log"))
	if !strings.Contains(log, "daemon started") {
		t.Errorf("daemon.log:\n%s", log)
	}
	if code, _, stderr, _ := f.runBin("-d", "3600"); code != exitStateLocked || !strings.Contains(stderr, fmt.Sprintf("pid %d", pid)) ||
		!strings.Contains(stderr, "popfetch --quit -d INTERVAL replaces it") {
		t.Errorf("a second -d: exit %d, %s", code, stderr)
	}
	if code, out, _, _ := f.runBin("status"); code != exitMail || !strings.Contains(out, "running, pid "+strconv.Itoa(pid)) {
		t.Errorf("status: exit %d\n%s", code, out)
	}

	code, _, stderr, took = f.runBin("--quit")
	if code != exitMail || !strings.Contains(stderr, fmt.Sprintf("daemon (pid %d) has stopped", pid)) || took > 12*time.Second {
		t.Errorf("--quit: exit %d after %v: %s", code, took, stderr)
	}
	if _, running := daemonRunning(f.stateDir); running {
		t.Fatal("the daemon still runs after --quit returned")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		// The lock is gone; give the process a moment to be reaped by init.
		waitUntil(t, "the daemon process to go", func() bool { return syscall.Kill(pid, 0) != nil })
	}
	code, _, stderr, _ = f.runBin("--quit")
	if code != exitNoMail || !strings.Contains(stderr, "no daemon is running") {
		t.Errorf("--quit without a daemon: exit %d, %s", code, stderr)
	}
	if code, _, stderr, _ := f.runBin("--quit", "-q"); code != exitNoMail || stderr != "" {
		t.Errorf("--quit -q without a daemon: exit %d, %q", code, stderr)
	}

	// A daemon killed with SIGKILL leaves its socket and PID file: they
	// neither hang nor mislead --quit, status or a plain run.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: socketPath(f.stateDir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	os.WriteFile(lockPath(f.stateDir), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	code, _, stderr, took = f.runBin("--quit")
	if code != exitNoMail || took > 5*time.Second || !strings.Contains(stderr, "no daemon is running") {
		t.Errorf("--quit with a stale socket: exit %d after %v: %s", code, took, stderr)
	}
	if code, out, _, took := f.runBin("status"); code != exitNoMail || took > 5*time.Second || !strings.Contains(out, "not running") {
		t.Errorf("status with a stale socket: exit %d after %v\n%s", code, took, out)
	}
	f.srv.Add(pop3test.Message{UID: "x", Data: []byte("Subject: x\n\nx\n")})
	if code, _, stderr, took := f.runBin(); code != exitMail || took > 5*time.Second {
		t.Errorf("a plain run beside a stale socket: exit %d after %v: %s", code, took, stderr)
	}
}

// getsid returns the session of process pid.
func getsid(pid int) (int, error) {
	sid, _, errno := syscall.RawSyscall(syscall.SYS_GETSID, uintptr(pid), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(sid), nil
}

// TestHabitsDetachFailures: a daemon that cannot start says why through
// the process that started it, which exits non-zero: a log file that
// cannot be opened, a broken configuration, --syslog without a syslog.
func TestHabitsDetachFailures(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 0, "")
	t.Cleanup(f.quitDaemon)
	code, _, stderr, took := f.runBin("-d", "300", "-L", "/nonexistent/dir/popfetch.log")
	if code != exitConfig || !strings.Contains(stderr, "--logfile") || !strings.Contains(stderr, "/nonexistent/dir/popfetch.log") || took > 10*time.Second {
		t.Errorf("-L to a missing directory: exit %d after %v: %s", code, took, stderr)
	}
	f.writeConfig(readFile(t, f.config)+"\nbogus_key = 1\nkeep = \"yes\"\n", 0o600)
	code, _, stderr, took = f.runBin("-d", "300")
	if code != exitConfig || !strings.Contains(stderr, "bogus_key") || took > 10*time.Second {
		t.Errorf("-d with a broken config: exit %d after %v: %s", code, took, stderr)
	}
	// Each problem on a line of its own, as a run in the foreground
	// shows them, not run together on one.
	_, _, fgStderr, _ := f.runBin()
	if stderr != fgStderr || strings.Count(stderr, "\n") < 3 {
		t.Errorf("-d with a broken config says\n%s\nwhere a run in the foreground says\n%s", stderr, fgStderr)
	}
	if _, running := daemonRunning(f.stateDir); running {
		t.Error("a daemon runs after a failed start")
	}
	if code, _, stderr, _ := f.runBin("-d", "300", "-L", filepath.Join(f.dir, "x.log"), "--syslog"); code != exitConfig || !strings.Contains(stderr, "contradict") {
		t.Errorf("-L with --syslog: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat("/dev/log"); err != nil {
		if code, _, stderr, _ := f.runBin("-d", "300", "--syslog"); code != exitConfig || !strings.Contains(stderr, "--syslog") {
			t.Errorf("--syslog without a syslog daemon: exit %d, %s", code, stderr)
		}
	}
}

// TestHabitsLogfile: -L appends the daemon's log (not run detached here:
// -N keeps it in the foreground, and the log still goes to the file).
func TestHabitsLogfile(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 1, "interval = 3600\n")
	t.Cleanup(f.quitDaemon)
	logPath := filepath.Join(f.dir, "popfetch.log")
	os.WriteFile(logPath, []byte("earlier line\n"), 0o600)
	cmd := exec.Command(popfetchBinary(t), "--config", f.config, "--state-dir", f.stateDir, "-d", "3600", "-N", "-L", logPath)
	cmd.Env = binEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	waitUntil(t, "the poll", func() bool { return f.countMaildir() == 1 })
	waitUntil(t, "the log line", func() bool { return strings.Contains(readFile(t, logPath), "1 delivered") })
	if code, _, stderr, _ := f.runBin("--quit"); code != exitMail {
		t.Errorf("--quit: exit %d, %s", code, stderr)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("-N daemon still running after --quit")
	}
	log := readFile(t, logPath)
	if !strings.HasPrefix(log, "earlier line\n") || !strings.Contains(log, "daemon started") || !strings.Contains(log, "as popfetch --quit asked") {
		t.Errorf("log file:\n%s", log)
	}
	if out.Len() != 0 {
		t.Errorf("-N -L wrote to standard error:\n%s", out.String())
	}
	if fi, err := os.Stat(logPath); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("log file mode: %v %v", fi, err)
	}
}

// TestHabitsWakeDaemon: a plain popfetch while the daemon runs wakes it,
// reports that poll's result at once (not after --lock-timeout), and
// polls itself the accounts the daemon does not poll; with -k (which the
// daemon's polls would not honour) it polls itself.
func TestHabitsWakeDaemon(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 1, "interval = 3600\n")
	other, err := pop3test.NewServer(pop3test.Config{User: "alice", Password: "wonderland"},
		pop3test.Message{UID: "o1", Data: []byte("Subject: other\n\nother\n")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	otherMaildir := filepath.Join(f.dir, "Other")
	f.writeConfig(readFile(t, f.config)+pop3testAccount("other", other.Addr(), otherMaildir, "timeout = \"5s\"\n"), 0o600)
	t.Cleanup(f.quitDaemon)
	// The daemon polls "test" only.
	if code, _, stderr, _ := f.runBin("-d", "3600", "test"); code != exitMail {
		t.Fatalf("-d: exit %d, %s", code, stderr)
	}
	waitUntil(t, "the daemon's first poll", func() bool { return f.countMaildir() == 1 })
	sessions := f.srv.Sessions()

	f.srv.Add(pop3test.Message{UID: "w1", Data: []byte("Subject: w1\n\nw1\n")})
	code, stdout, stderr, took := f.runBin("--lock-timeout", "30s")
	if code != exitMail || took > 10*time.Second {
		t.Fatalf("plain run beside the daemon: exit %d after %v\n%s%s", code, took, stdout, stderr)
	}
	if f.countMaildir() != 2 || f.srv.Sessions() != sessions+1 {
		t.Errorf("the wake: %d in the Maildir, %d sessions (was %d)", f.countMaildir(), f.srv.Sessions(), sessions)
	}
	if !strings.Contains(stderr, "test: 1 message on the server, 1 new, 1 delivered") {
		t.Errorf("the daemon's poll, as reported:\n%s", stderr)
	}
	if n, _ := os.ReadDir(filepath.Join(otherMaildir, "new")); len(n) != 1 || !strings.Contains(stderr, "other: ") {
		t.Errorf("the account the daemon does not poll: %d delivered\n%s", len(n), stderr)
	}
	log := readFile(t, filepath.Join(f.stateDir, "daemon.log"))
	if !strings.Contains(log, "polling every account now, as a popfetch run asked") {
		t.Errorf("daemon.log:\n%s", log)
	}
	// Nothing new: exit 1, the daemon's answer.
	if code, _, stderr, _ := f.runBin(); code != exitNoMail {
		t.Errorf("second wake: exit %d, %s", code, stderr)
	}
	// -q: nothing printed when nothing failed.
	if code, stdout, stderr, _ := f.runBin("-s"); code != exitNoMail || stdout+stderr != "" {
		t.Errorf("wake with -s: exit %d, %q %q", code, stdout, stderr)
	}
	// A failure the daemon's poll meets comes back with its exit code.
	f.srv.SetFaults(pop3test.Fault{Command: "PASS", Action: pop3test.Reply, Reply: "-ERR [AUTH] no"})
	if code, _, stderr, _ := f.runBin("--lock-timeout", "30s"); code != exitAuth || !strings.Contains(stderr, "test: error:") {
		t.Errorf("wake with a refused login: exit %d, %s", code, stderr)
	}
	f.srv.SetFaults()
	// -k: the daemon's polls would delete; this run polls by itself.
	f.srv.Add(pop3test.Message{UID: "k1", Data: []byte("Subject: k1\n\nk1\n")})
	sessions = f.srv.Sessions()
	if code, _, stderr, _ := f.runBin("-k", "--lock-timeout", "30s"); code != exitMail || f.srv.Count("DELE") != 0 && len(f.srv.Messages()) != 1 {
		t.Errorf("-k beside the daemon: exit %d, %d on the server, %s", code, len(f.srv.Messages()), stderr)
	}
	if len(f.srv.Messages()) != 1 || f.srv.Messages()[0].UID != "k1" {
		t.Errorf("-k beside the daemon deleted: %+v", f.srv.Messages())
	}
	// -v shows what the daemon's polls would not: this run polls itself.
	wakes := func() int {
		return strings.Count(readFile(t, filepath.Join(f.stateDir, "daemon.log")), "as a popfetch run asked")
	}
	before := wakes()
	if code, _, stderr, _ := f.runBin("-v", "--lock-timeout", "30s"); code != exitNoMail || wakes() != before ||
		!strings.Contains(stderr, "test: ") {
		t.Errorf("-v beside the daemon: exit %d, %d wakes (was %d), %s", code, wakes(), before, stderr)
	}
	// A named account is this run's own poll too.
	if code, _, stderr, _ := f.runBin("test", "--lock-timeout", "30s"); code != exitNoMail {
		t.Errorf("named account beside the daemon: exit %d, %s", code, stderr)
	}
}

// TestHabitsNokeep: -K deletes this once what a keep = true account kept,
// and -k -K together are refused.
func TestHabitsNokeep(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 2, "keep = true\ndelete_after = \"30d\"\n")
	if code, _, stderr, _ := f.runBin(); code != exitMail || len(f.srv.Messages()) != 2 {
		t.Fatalf("keep: exit %d, %d on the server, %s", code, len(f.srv.Messages()), stderr)
	}
	f.srv.Add(pop3test.Message{UID: "new", Data: []byte("Subject: new\n\nnew\n")})
	if code, _, stderr, _ := f.runBin("-K"); code != exitMail || len(f.srv.Messages()) != 0 || f.countMaildir() != 3 {
		t.Errorf("-K: exit %d, %d on the server, %d delivered, %s", code, len(f.srv.Messages()), f.countMaildir(), stderr)
	}
	code, _, stderr, _ := f.runBin("-k", "-K")
	if code != exitConfig || !strings.Contains(stderr, "contradict") {
		t.Errorf("-k -K: exit %d, %s", code, stderr)
	}
	if code, _, stderr, _ := f.runBin("-kK"); code != exitConfig {
		t.Errorf("-kK: exit %d, %s", code, stderr)
	}
}

// TestHabitsSilentAndCheckFlag: -s (--silent) is -q; -c (--check) is the
// check command.
func TestHabitsSilentAndCheckFlag(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 3, "")
	code, stdout, _, _ := f.runBin("-c")
	if code != exitMail || !strings.Contains(stdout, "test: 3 messages, 3 new") || f.countMaildir() != 0 {
		t.Errorf("-c: exit %d, %q, %d fetched", code, stdout, f.countMaildir())
	}
	if code, _, stderr, _ := f.runBin("--check", "-d", "300"); code != exitConfig || !strings.Contains(stderr, "-c") {
		t.Errorf("-c -d: exit %d, %s", code, stderr)
	}
	code, stdout, stderr, _ := f.runBin("-s")
	if code != exitMail || stdout+stderr != "" || f.countMaildir() != 3 {
		t.Errorf("-s: exit %d, %q %q", code, stdout, stderr)
	}
	if code, _, _, _ := f.runBin("--silent"); code != exitNoMail {
		t.Errorf("--silent: exit %d", code)
	}
}

// TestHabitsStatusReloadFailed: "popfetch status" tells of a reload that
// failed: when, why, and which configuration stays in force; a reload
// that works clears it.
func TestHabitsStatusReloadFailed(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 1, "interval = 3600\n")
	t.Cleanup(f.quitDaemon)
	if code, _, stderr, _ := f.runBin("-d", "3600"); code != exitMail {
		t.Fatalf("-d: exit %d, %s", code, stderr)
	}
	pid, _ := daemonRunning(f.stateDir)
	good := readFile(t, f.config)
	f.writeConfig(good+"\n[[account]]\nname = \"broken\"\nserver = \"\\u001b[31mred\"\n", 0o600)
	syscall.Kill(pid, syscall.SIGHUP)
	var out string
	waitUntil(t, "the failed reload in the status", func() bool {
		_, out, _, _ = f.runBin("status")
		return strings.Contains(out, "reload failed at")
	})
	if !strings.Contains(out, "still in force: the configuration it read at ") || !strings.Contains(out, f.config) ||
		strings.Contains(out, "\x1b") || !strings.Contains(out, "broken") {
		t.Errorf("status after a failed reload:\n%s", out)
	}
	_, js, _, _ := f.runBin("status", "--json")
	var st statusFile
	if err := json.Unmarshal([]byte(js), &st); err != nil || st.ReloadFailed.IsZero() || st.ReloadError == "" ||
		st.ConfigLoaded.IsZero() || !st.ConfigLoaded.Before(st.ReloadFailed) {
		t.Errorf("status --json: %v\n%s", err, js)
	}
	f.writeConfig(good, 0o600)
	syscall.Kill(pid, syscall.SIGHUP)
	waitUntil(t, "the good reload", func() bool {
		_, out, _, _ = f.runBin("status")
		return !strings.Contains(out, "reload failed")
	})
}

// TestHabitsSyslog: --syslog sends the lines to syslog, facility mail,
// at the priority of each. The test listens on /dev/log itself, so it
// runs only where no syslog daemon does (and as root).
func TestHabitsSyslog(t *testing.T) {
	if _, err := os.Stat("/dev/log"); err == nil || os.Geteuid() != 0 {
		t.Skip("SKIPPING the --syslog test: a syslog daemon holds /dev/log, or the test is not root")
	}
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "/dev/log", Net: "unixgram"})
	if err != nil {
		t.Skipf("SKIPPING --syslog test: %v", err)
	}
	t.Cleanup(func() { ln.Close(); os.Remove("/dev/log") })
	f := newCLIFixture(t, pop3test.Config{}, 1, "")
	f.srv.SetFaults(pop3test.Fault{Command: "PASS", Action: pop3test.Reply, Reply: "-ERR [AUTH] \x1b[2Jno"})
	code, stdout, stderr, _ := f.runBin("--syslog")
	if code != exitAuth || stdout+stderr != "" {
		t.Fatalf("--syslog: exit %d, %q %q", code, stdout, stderr)
	}
	ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 8192)
	n, err := ln.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	msg := string(buf[:n])
	// <19>: facility mail (2) × 8 + priority err (3).
	if !strings.HasPrefix(msg, "<19>") || !strings.Contains(msg, "popfetch") || !strings.Contains(msg, "test: error:") || strings.Contains(msg, "\x1b") {
		t.Errorf("syslog got %q", msg)
	}
}

// TestHabitsWakeDuringPoll: a wake while the daemon polls waits for a
// poll that starts after it, and reports that one, which sees the mail
// that came meanwhile.
func TestHabitsWakeDuringPoll(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 0, "interval = 3600\n")
	t.Cleanup(f.quitDaemon)
	if code, _, stderr, _ := f.runBin("-d", "3600"); code != exitMail {
		t.Fatalf("-d: exit %d, %s", code, stderr)
	}
	pid, _ := daemonRunning(f.stateDir)
	// The first poll must be over, not only connected: one that has not
	// listed the mailbox yet would take the message added below, stall
	// on it, and leave the later polls one session short.
	waitUntil(t, "the first poll", func() bool { return f.srv.Count("QUIT") == 1 })
	// The next poll stalls at its RETR for 2 s.
	f.srv.SetFaults(pop3test.Fault{Command: "RETR", Nth: 1, Action: pop3test.Stall, Delay: 2 * time.Second})
	f.srv.Add(pop3test.Message{UID: "first", Data: []byte("Subject: first\n\nfirst\n")})
	syscall.Kill(pid, syscall.SIGUSR1)
	waitUntil(t, "the stalled RETR", func() bool { return f.srv.Count("RETR") == 1 })
	f.srv.Add(pop3test.Message{UID: "second", Data: []byte("Subject: second\n\nsecond\n")})
	code, _, stderr, _ := f.runBin("--lock-timeout", "30s")
	if code != exitMail || f.countMaildir() != 2 || f.srv.Sessions() != 3 {
		t.Errorf("wake during a poll: exit %d, %d delivered, %d sessions\n%s", code, f.countMaildir(), f.srv.Sessions(), stderr)
	}
	// The poll reported is the one after the wake: the first message was
	// deleted by the stalled poll, the second is new.
	if !strings.Contains(stderr, "test: 1 message on the server, 1 new, 1 delivered") || strings.Count(stderr, "test: ") != 1 {
		t.Errorf("reported:\n%s", stderr)
	}
}

// TestHabitsNoForkUnderSystemd: under systemd (INVOCATION_ID set) -d
// stays in the foreground, in the process systemd started.
func TestHabitsNoForkUnderSystemd(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 0, "interval = 3600\n")
	cmd := exec.Command(popfetchBinary(t), "--config", f.config, "--state-dir", f.stateDir, "-d", "3600")
	cmd.Env = append(binEnv(), "INVOCATION_ID=0123456789abcdef")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	waitUntil(t, "the daemon", func() bool { _, running := daemonRunning(f.stateDir); return running })
	if pid, _ := daemonRunning(f.stateDir); pid != 0 && pid != cmd.Process.Pid {
		t.Errorf("daemon pid %d, started %d: it forked", pid, cmd.Process.Pid)
	}
	waitUntil(t, "the log line", func() bool { return strings.Contains(out.String(), "daemon started") })
	if code, _, stderr, _ := f.runBin("--quit"); code != exitMail {
		t.Errorf("--quit: exit %d, %s", code, stderr)
	}
	select {
	case <-done:
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit %d\n%s", code, out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still running after --quit")
	}
}

// TestHabitsQuitOtherUser: another user cannot stop the daemon or wake
// it, even where the socket's mode would let them connect.
func TestHabitsQuitOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING the other-user test: it needs root to run a process as nobody")
	}
	f := newCLIFixture(t, pop3test.Config{}, 0, "interval = 3600\n")
	t.Cleanup(f.quitDaemon)
	if code, _, stderr, _ := f.runBin("-d", "3600"); code != exitMail {
		t.Fatalf("-d: exit %d, %s", code, stderr)
	}
	pid, _ := daemonRunning(f.stateDir)
	// As if the socket had been reached before its chmod.
	os.Chmod(filepath.Dir(f.dir), 0o755)
	os.Chmod(f.dir, 0o755)
	os.Chmod(f.stateDir, 0o777)
	os.Chmod(socketPath(f.stateDir), 0o666)
	// A copy of the binary nobody may run.
	bin := filepath.Join(f.dir, "popfetch")
	data, err := os.ReadFile(popfetchBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	cmd := exec.Command(bin, "--state-dir", f.stateDir, "--quit")
	cmd.Env = binEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() == exitMail {
		t.Errorf("--quit as nobody: exit 0\n%s", out)
	}
	time.Sleep(200 * time.Millisecond)
	if p, running := daemonRunning(f.stateDir); !running || p != pid {
		t.Fatalf("the daemon stopped at another user's --quit (%s)", out)
	}
	t.Logf("exit %d: %s", cmd.ProcessState.ExitCode(), out)
	if !strings.Contains(string(out), "not permitted") {
		t.Errorf("--quit as nobody said: %s", out)
	}
}

// TestHabitsStateFilesInManPage: every file a detached daemon leaves in
// the state directory is one the manual page's FILES describes, so that
// "where is the log?" has its answer there.
func TestHabitsStateFilesInManPage(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 1, "interval = 3600\n")
	t.Cleanup(f.quitDaemon)
	if code, stdout, stderr, _ := f.runBin("-d", "3600"); code != exitMail {
		t.Fatalf("-d: exit %d\n%s%s", code, stdout, stderr)
	}
	waitUntil(t, "the detached daemon's first poll", func() bool { return f.countMaildir() == 1 })
	f.runBin("--quit")
	files := manSections(runBinary(t, "man"))["FILES"]
	entries, err := os.ReadDir(f.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.Contains(files, "STATE/"+e.Name()) {
			t.Errorf("the state directory holds %s; FILES does not name it:\n%s", e.Name(), files)
		}
	}
}

// TestHabitsSyslogMissing: --syslog where no syslog daemon listens fails
// at once (exit 5), also with -d before detaching, and says why and what
// else to do, not only Go's "Unix syslog delivery error".
func TestHabitsSyslogMissing(t *testing.T) {
	for _, p := range []string{"/dev/log", "/var/run/syslog", "/var/run/log"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			t.Skipf("SKIPPING: %s is a socket, so a syslog daemon may listen", p)
		}
	}
	f := newCLIFixture(t, pop3test.Config{}, 1, "")
	t.Cleanup(f.quitDaemon)
	for _, args := range [][]string{{"--syslog"}, {"-d", "3600", "--syslog"}} {
		code, _, stderr, _ := f.runBin(args...)
		if code != exitConfig || !strings.Contains(stderr, "no syslog daemon listens on /dev/log") || !strings.Contains(stderr, "-L FILE") {
			t.Errorf("popfetch %v: exit %d, want %d and why:\n%s", args, code, exitConfig, stderr)
		}
	}
}

// TestHabitsWakeWithBrokenConfig: a plain run beside the daemon after the
// file was broken still wakes it (its polls use what it read before), but
// says that the file has errors, which a run of its own would have
// refused with exit 5.
func TestHabitsWakeWithBrokenConfig(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 1, "interval = 3600\n")
	t.Cleanup(f.quitDaemon)
	if code, stdout, stderr, _ := f.runBin("-d", "3600"); code != exitMail {
		t.Fatalf("-d: exit %d\n%s%s", code, stdout, stderr)
	}
	waitUntil(t, "the detached daemon's first poll", func() bool { return f.countMaildir() == 1 })
	f.writeConfig(readFile(t, f.config)+"kep = true\n", 0o600)
	code, _, stderr, _ := f.runBin()
	if code != exitNoMail || !strings.Contains(stderr, "test: 0 messages on the server") ||
		!strings.Contains(stderr, f.config+" has errors (popfetch config check shows them)") {
		t.Errorf("a wake with a broken file: exit %d, want %d, the daemon's poll and a warning:\n%s", code, exitNoMail, stderr)
	}
}

// impostorEnv makes the test binary, run again, a fake daemon
// (impostorDaemon) for TestHabitsImpostorDaemon.
const impostorEnv = "POPFETCH_TEST_IMPOSTOR"

// TestImpostorHelper is not a test: run as another user with
// impostorEnv=STATEDIR:PID, it is that user planting a daemon in a state
// directory open to others. It holds the lock on daemon.pid, which names
// PID, listens on daemon.sock, answers a poll as if it had polled every
// account, and ends without an answer at a quit.
func TestImpostorHelper(t *testing.T) {
	arg := os.Getenv(impostorEnv)
	if arg == "" {
		t.Skip("a helper for TestHabitsImpostorDaemon")
	}
	stateDir, victim, _ := strings.Cut(arg, ":")
	// Our own daemon.pid, left by a daemon of ours, can be locked
	// read-only; else one of its own is planted.
	f, err := os.Open(lockPath(stateDir))
	if err != nil {
		f, err = os.OpenFile(lockPath(stateDir), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Println("fail", err)
			os.Exit(1)
		}
		f.WriteString(victim + "\n")
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
	os.Remove(socketPath(stateDir))
	ln, err := net.Listen("unix", socketPath(stateDir))
	if err != nil {
		fmt.Println("fail", err)
		os.Exit(1)
	}
	os.Chmod(socketPath(stateDir), 0o666)
	fmt.Println("ready")
	for {
		conn, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		req, _ := readRequest(conn)
		if req.Op == opQuit {
			os.Exit(0) // no answer: the client falls back to the PID file
		}
		data, _ := json.Marshal(controlReply{Reply: req.Op, Accounts: []string{"test"}})
		conn.Write(append(data, '\n'))
		conn.Close()
	}
}

// TestHabitsImpostorDaemon: in a state directory open to others, another
// user plants a daemon.pid it holds locked and a daemon.sock it answers
// on. A plain run does not take its word that every account was polled
// (it goes on to refuse the state directory), and --quit does not signal
// the process the planted PID file names.
func TestHabitsImpostorDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING the impostor test: it needs root to run a process as nobody")
	}
	f := newCLIFixture(t, pop3test.Config{}, 1, "")
	os.MkdirAll(f.stateDir, 0o700)
	os.Chmod(filepath.Dir(f.dir), 0o755)
	os.Chmod(f.dir, 0o755)
	os.Chmod(f.stateDir, 0o777)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(f.dir, "impostor.test")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	// The process a planted PID file names: one of ours.
	victim := exec.Command("sleep", "60")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	victimDone := make(chan error, 1)
	go func() { victimDone <- victim.Wait() }()
	t.Cleanup(func() { victim.Process.Kill() })

	start := func() *exec.Cmd {
		const nobody = 65534
		cmd := exec.Command(bin, "-test.run=^TestImpostorHelper$")
		cmd.Env = append(binEnv(), impostorEnv+"="+f.stateDir+":"+strconv.Itoa(victim.Process.Pid))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		line := make([]byte, 64)
		n, _ := out.Read(line)
		if !strings.HasPrefix(string(line[:n]), "ready") {
			t.Fatalf("the impostor did not start: %q", line[:n])
		}
		return cmd
	}

	for _, planted := range []bool{true, false} {
		if !planted {
			// A PID file of ours (mode 0644, as a daemon leaves it),
			// naming a PID since reused; the impostor locks it.
			os.Remove(lockPath(f.stateDir))
			os.WriteFile(lockPath(f.stateDir), []byte(strconv.Itoa(victim.Process.Pid)+"\n"), 0o644)
		}
		start()
		// Not "the daemon polled every account" (exit 1): the state
		// directory is refused (exit 6), as another user can write in it.
		code, _, stderr := f.run()
		if code != exitPermissions || !strings.Contains(stderr, "can be written by group or others") {
			t.Errorf("planted PID file %v: a run beside the impostor: exit %d\n%s", planted, code, stderr)
		}
		code, _, stderr = f.run("--quit")
		select {
		case <-victimDone:
			t.Fatalf("planted PID file %v: --quit signalled the process the PID file names (exit %d)\n%s", planted, code, stderr)
		case <-time.After(300 * time.Millisecond):
		}
		if code == exitMail {
			t.Errorf("planted PID file %v: --quit: exit 0 for a daemon that is not ours\n%s", planted, stderr)
		}
	}
}

// TestHabitsStateDirOthersCanWrite: in a state directory another user
// can write in, a daemon.pid planted as a link to one of the user's files
// is not opened and truncated by the daemon, nor daemon.log appended to
// by popfetch -d: both refuse the directory first (exit 6).
func TestHabitsStateDirOthersCanWrite(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 1, "interval = 3600\n")
	t.Cleanup(f.quitDaemon)
	os.MkdirAll(f.stateDir, 0o700)
	os.Chmod(f.stateDir, 0o777)
	precious := filepath.Join(f.dir, "precious")
	os.WriteFile(precious, []byte("the user's own file\n"), 0o600)
	os.Symlink(precious, lockPath(f.stateDir))
	os.Symlink(precious, filepath.Join(f.stateDir, "daemon.log"))
	for _, args := range [][]string{{"daemon"}, {"-d", "3600"}} {
		code, _, stderr, _ := f.runBin(args...)
		if code != exitPermissions || !strings.Contains(stderr, "can be written by group or others") {
			t.Errorf("popfetch %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
		}
		if data, _ := os.ReadFile(precious); string(data) != "the user's own file\n" {
			t.Fatalf("popfetch %s wrote through a link in the state directory: %q", strings.Join(args, " "), data)
		}
	}
	if f.countMaildir() != 0 {
		t.Errorf("a daemon in a state directory others can write in delivered mail")
	}
}
