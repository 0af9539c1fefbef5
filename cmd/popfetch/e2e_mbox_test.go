package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// TestDaemonSharedMboxWithoutDotLock: the daemon polls two accounts at
// once, both delivering into one mbox in a spool directory where popfetch
// may not create FILE.lock (as /var/mail for a user not in group mail).
// With the dot-lock impossible only the file lock keeps the two apart, and
// a process-wide fcntl lock would not: each account's messages must arrive
// whole, none mixed, none lost. The polls are made to overlap: each
// server holds its first RETR until the other has one too.
//
// As root the daemon runs as "nobody", so that the directory really
// refuses it; otherwise the directory is made read-only.
func TestDaemonSharedMboxWithoutDotLock(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a daemon test")
	}
	bin := popfetchBinary(t)
	const perAccount = 40
	body := strings.Repeat("From the start of a line, a line long enough to split writes.\n", 2500) // ~150 KiB

	// The barrier: each server's first RETR waits for the other's.
	var arrived sync.WaitGroup
	arrived.Add(2)
	var servers []*pop3test.Server
	want := map[string]bool{}
	for a := range 2 {
		var once sync.Once
		var msgs []pop3test.Message
		for i := range perAccount {
			data := fmt.Sprintf("Return-Path: <a%d@example.com>\nMessage-ID: <%d.%d@test>\nSubject: account %d message %d\n\n%s", a, a, i, a, i, body)
			msgs = append(msgs, pop3test.Message{UID: fmt.Sprintf("a%d-%d", a, i), Data: []byte(data)})
			want[data] = true
		}
		srv, err := pop3test.NewServer(pop3test.Config{User: "alice", Password: "wonderland", Pipelining: true,
			Hook: func(line string) {
				if strings.HasPrefix(line, "RETR") {
					once.Do(func() {
						arrived.Done()
						done := make(chan struct{})
						go func() { arrived.Wait(); close(done) }()
						select {
						case <-done:
						case <-time.After(20 * time.Second):
						}
					})
				}
			}}, msgs...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		servers = append(servers, srv)
	}

	// A world-readable work directory (t.TempDir's parent is 0700).
	dir, err := os.MkdirTemp("", "popfetch-mbox-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "spool"), 0o755); os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	spool := filepath.Join(dir, "spool")
	mbox := filepath.Join(spool, "inbox")
	state := filepath.Join(dir, "state")
	config := filepath.Join(dir, "config.toml")
	exe := filepath.Join(dir, "popfetch")
	for _, d := range []string{spool, state} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, bin, exe, 0o755)
	if err := os.WriteFile(mbox, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	text := "[defaults]\ninterval = \"1h\"\n"
	for a, srv := range servers {
		text += pop3testAccount(fmt.Sprintf("acct%d", a), srv.Addr(), "", "")
	}
	text = regexp.MustCompile(`(?m)^maildir = .*$`).ReplaceAllString(text, fmt.Sprintf("mbox = %q", mbox))
	if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(exe, "daemon", "--config", config, "--state-dir", state)
	if os.Geteuid() == 0 {
		const nobody = 65534
		for _, p := range []string{mbox, state, config} {
			if err := os.Chown(p, nobody, nobody); err != nil {
				t.Fatal(err)
			}
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		cmd.Env = append(os.Environ(), "HOME="+state, "XDG_CONFIG_HOME="+state, "XDG_STATE_HOME="+state)
	} else {
		os.Chmod(spool, 0o555)
	}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })

	deadline := time.Now().Add(90 * time.Second)
	for len(servers[0].Messages())+len(servers[1].Messages()) > 0 {
		select {
		case <-exited:
			t.Fatalf("the daemon exited early:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mailboxes were not emptied in time:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit after SIGTERM:\n%s", out.String())
	}
	if _, err := os.Stat(mbox + ".lock"); err == nil {
		t.Fatalf("a dot-lock was made: the directory did not refuse it, so the test tested nothing")
	}
	data, err := os.ReadFile(mbox)
	if err != nil {
		t.Fatal(err)
	}
	// Split the mboxrd file and unquote its From lines.
	quoted := regexp.MustCompile(`(?m)^>(>*From )`)
	parts := strings.Split("\n\n"+string(data), "\n\nFrom ")[1:]
	mixed := 0
	for i, p := range parts {
		_, msg, _ := strings.Cut(p, "\n")
		msg = stripReceived(quoted.ReplaceAllString(msg, "$1"))
		// The split took the line end of every message but the last,
		// which still has the blank line that ends it.
		if i == len(parts)-1 {
			msg = strings.TrimSuffix(msg, "\n")
		} else {
			msg += "\n"
		}
		if !want[msg] {
			mixed++
			continue
		}
		delete(want, msg)
	}
	if len(parts) != 2*perAccount || mixed > 0 || len(want) > 0 {
		t.Fatalf("the mbox holds %d messages (want %d): %d mixed or cut, %d missing\n%s",
			len(parts), 2*perAccount, mixed, len(want), out.String())
	}
	if !bytes.Contains([]byte(out.String()), []byte("acct0")) || !bytes.Contains([]byte(out.String()), []byte("acct1")) {
		t.Errorf("the daemon's log does not mention both accounts:\n%s", out.String())
	}
}

// copyFile copies src to dst with the given mode.
func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
}
