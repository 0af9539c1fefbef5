package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
	"github.com/popfetch/popfetch/uidstore"
)

func TestCombine(t *testing.T) {
	tests := []struct {
		codes []int
		want  int
	}{
		{nil, exitNoMail},
		{[]int{exitNoMail, exitNoMail}, exitNoMail},
		{[]int{exitNoMail, exitMail}, exitMail},
		{[]int{exitAuth, exitMail}, exitMail},
		{[]int{exitAuth, exitSocket, exitNoMail}, exitAuth},
		{[]int{exitDelivery, exitInternal}, exitInternal},
		{[]int{exitFetchLimit}, exitFetchLimit},
		{[]int{exitFetchLimit, exitMail}, exitFetchLimit},
		{[]int{exitFetchLimit, exitAuth}, exitMail},
	}
	for _, tt := range tests {
		if got := combine(tt.codes); got != tt.want {
			t.Errorf("combine(%v) = %d, want %d", tt.codes, got, tt.want)
		}
	}
}

// cliFixture is a pop3test server, a config file for it and a state dir.
type cliFixture struct {
	t        *testing.T
	srv      *pop3test.Server
	dir      string
	config   string
	maildir  string
	stateDir string
}

func newCLIFixture(t *testing.T, srvCfg pop3test.Config, n int, extra string) *cliFixture {
	t.Helper()
	srvCfg.User, srvCfg.Password = "alice", "wonderland"
	var msgs []pop3test.Message
	for i := 1; i <= n; i++ {
		msgs = append(msgs, pop3test.Message{UID: fmt.Sprintf("u%d", i),
			Data: []byte(fmt.Sprintf("From: b@example.com\nSubject: test %d\n\nbody %d\n", i, i))})
	}
	srv, err := pop3test.NewServer(srvCfg, msgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	f := &cliFixture{t: t, srv: srv, dir: dir, config: filepath.Join(dir, "config.toml"),
		maildir: filepath.Join(dir, "Mail"), stateDir: filepath.Join(dir, "state")}
	f.writeConfig(pop3testAccount("test", srv.Addr(), f.maildir, "timeout = \"5s\"\n"+extra), 0o600)
	return f
}

// pop3testAccount is an [[account]] table for a pop3test server at addr
// (user alice, password wonderland, plaintext), with extra lines.
func pop3testAccount(name, addr, maildir, extra string) string {
	host, port, _ := strings.Cut(addr, ":")
	return fmt.Sprintf(`
[[account]]
name = %q
server = %q
port = %s
tls = "none"
allow_insecure_auth = true
user = "alice"
password = "wonderland"
maildir = %q
%s`, name, host, port, maildir, extra)
}

func (f *cliFixture) writeConfig(text string, mode os.FileMode) {
	if err := os.WriteFile(f.config, []byte(text), mode); err != nil {
		f.t.Fatal(err)
	}
	os.Chmod(f.config, mode)
}

func (f *cliFixture) run(args ...string) (int, string, string) {
	f.t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	full := append([]string{"popfetch", "--config", f.config, "--state-dir", f.stateDir}, args...)
	code := run(ctx, nil, full, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func (f *cliFixture) countMaildir() int {
	entries, _ := os.ReadDir(filepath.Join(f.maildir, "new"))
	return len(entries)
}

func TestFetchAndExitCodes(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 3, "")
	code, _, stderr := f.run()
	if code != exitMail || f.countMaildir() != 3 {
		t.Fatalf("first run: exit %d, %d messages\n%s", code, f.countMaildir(), stderr)
	}
	if !strings.Contains(stderr, "popfetch: test: 3 messages on the server, 3 new, 3 delivered") {
		t.Errorf("summary line missing:\n%s", stderr)
	}
	code, _, stderr = f.run("fetch", "test")
	if code != exitNoMail {
		t.Fatalf("second run: exit %d\n%s", code, stderr)
	}
	code, _, stderr = f.run("-q")
	if code != exitNoMail || stderr != "" {
		t.Fatalf("quiet run: exit %d, output %q", code, stderr)
	}
}

func TestVerbosity(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 2, "keep = true")
	_, _, stderr := f.run("-v")
	if !strings.Contains(stderr, `delivered uid=u1 number=1`) || !strings.Contains(stderr, `subject="test 1"`) {
		t.Errorf("-v lacks per-message lines:\n%s", stderr)
	}
	f.srv.Add(pop3test.Message{UID: "new", Data: []byte("Subject: x\n\ny\n")})
	_, _, stderr = f.run("fetch", "-vv")
	if !strings.Contains(stderr, "test C: PASS <redacted>") || strings.Contains(stderr, "wonderland") {
		t.Errorf("-vv trace wrong or leaks the password:\n%s", stderr)
	}
}

func TestKeepFlag(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 2, "")
	if code, _, stderr := f.run("-k"); code != exitMail {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if n := len(f.srv.Messages()); n != 2 {
		t.Errorf("-k deleted mail: %d left", n)
	}
}

// TestPolicyFlags: -k keeps even what delete_larger_than would delete,
// and -a (--fetch-all) fetches again what was delivered before.
func TestPolicyFlags(t *testing.T) {
	policy := "keep = true\ndelete_larger_than = 10"
	f := newCLIFixture(t, pop3test.Config{}, 2, policy)
	if code, _, stderr := f.run("-k"); code != exitMail || len(f.srv.Messages()) != 2 || f.countMaildir() != 2 {
		t.Fatalf("-k: exit %d, %d left\n%s", code, len(f.srv.Messages()), stderr)
	}
	f = newCLIFixture(t, pop3test.Config{}, 2, policy)
	code, _, stderr := f.run()
	if code != exitNoMail || len(f.srv.Messages()) != 0 || !strings.Contains(stderr, "2 larger than delete_larger_than deleted unread") {
		t.Fatalf("delete_larger_than: exit %d, %d left\n%s", code, len(f.srv.Messages()), stderr)
	}

	f = newCLIFixture(t, pop3test.Config{}, 2, "keep = true")
	f.run()
	if code, _, stderr := f.run("-a"); code != exitMail || f.countMaildir() != 4 {
		t.Fatalf("-a: exit %d, %d delivered\n%s", code, f.countMaildir(), stderr)
	}
	if code, _, stderr := f.run("--fetch-all", "test"); code != exitMail || f.countMaildir() != 6 {
		t.Fatalf("--fetch-all: exit %d, %d delivered\n%s", code, f.countMaildir(), stderr)
	}
}

func TestExitCodeTable(t *testing.T) {
	tests := []struct {
		name   string
		srv    pop3test.Config
		faults []pop3test.Fault
		extra  string
		setup  func(*cliFixture)
		args   []string
		want   int
	}{
		{"socket", pop3test.Config{}, nil, "", func(f *cliFixture) { f.srv.Close() }, nil, exitSocket},
		{"auth", pop3test.Config{}, []pop3test.Fault{{Command: "PASS", Action: pop3test.Reply, Reply: "-ERR [AUTH] no"}}, "", nil, nil, exitAuth},
		{"protocol", pop3test.Config{}, []pop3test.Fault{{Command: "UIDL", Action: pop3test.Garbage}}, "", nil, nil, exitProtocol},
		{"config", pop3test.Config{}, nil, "kep = true", nil, nil, exitConfig},
		{"unknown account", pop3test.Config{}, nil, "", nil, []string{"nope"}, exitConfig},
		{"usage", pop3test.Config{}, nil, "", nil, []string{"--no-such-flag"}, exitConfig},
		{"permissions", pop3test.Config{}, nil, "", func(f *cliFixture) { os.Chmod(f.config, 0o644) }, nil, exitPermissions},
		{"server", pop3test.Config{}, []pop3test.Fault{{Command: "UIDL", Action: pop3test.Reply, Reply: "-ERR [SYS/PERM] broken"}}, "", nil, nil, exitServer},
		{"state locked", pop3test.Config{}, nil, "", func(f *cliFixture) {
			s, err := uidstore.Open(filepath.Join(f.stateDir, "uids.db"), time.Second)
			if err != nil {
				f.t.Fatal(err)
			}
			f.t.Cleanup(func() { s.Close() })
		}, []string{"--lock-timeout", "100ms"}, exitStateLocked},
		{"mailbox locked", pop3test.Config{}, []pop3test.Fault{{Command: "PASS", Action: pop3test.Reply, Reply: "-ERR [IN-USE] busy"}}, "", nil, nil, exitMailboxLocked},
		{"delivery", pop3test.Config{}, nil, "", func(f *cliFixture) {
			os.MkdirAll(filepath.Join(f.maildir, "cur"), 0o700)
			os.MkdirAll(filepath.Join(f.maildir, "tmp"), 0o700)
			os.WriteFile(filepath.Join(f.maildir, "new"), nil, 0o600) // new/ is a file
		}, nil, exitDelivery},
		{"fetch limit", pop3test.Config{}, nil, "fetch_limit = 1", nil, nil, exitFetchLimit},
		{"check finds mail", pop3test.Config{}, nil, "", nil, []string{"check"}, exitMail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newCLIFixture(t, tt.srv, 2, tt.extra)
			f.srv.SetFaults(tt.faults...)
			if tt.setup != nil {
				tt.setup(f)
			}
			code, _, stderr := f.run(tt.args...)
			if code != tt.want {
				t.Fatalf("exit %d, want %d\n%s", code, tt.want, stderr)
			}
			if code != exitMail && code != exitFetchLimit && len(f.srv.Messages()) != 2 && tt.name != "socket" {
				t.Errorf("server lost mail")
			}
		})
	}
}

func TestCheck(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 2, "")
	code, stdout, _ := f.run("check")
	if code != exitMail || stdout != "test: 2 messages, 2 new\n" {
		t.Fatalf("exit %d, %q", code, stdout)
	}
	if f.countMaildir() != 0 || f.srv.Count("RETR") != 0 {
		t.Fatal("check fetched mail")
	}
	f.run()
	f.srv.Add(pop3test.Message{UID: "x", Data: []byte("x\n")})
	f.run("-k")
	code, stdout, _ = f.run("check")
	if code != exitNoMail || stdout != "test: 1 message, 0 new\n" {
		t.Fatalf("exit %d, %q", code, stdout)
	}
}

func TestPermute(t *testing.T) {
	app := newApp(nil, nil, &proc{})
	tests := []struct{ in, want string }{
		{"popfetch", "popfetch"},
		{"popfetch work -v", "popfetch -v work"},
		{"popfetch -v work", "popfetch -v work"},
		{"popfetch work -f c.toml -q other", "popfetch -f c.toml -q work other"},
		{"popfetch fetch work --state-dir=/s -k", "popfetch fetch --state-dir=/s -k work"},
		{"popfetch -v check work -vv", "popfetch check -v -vv work"},
		{"popfetch work -- -odd-name", "popfetch work -- -odd-name"},
		{"popfetch --lock-timeout 5s work", "popfetch --lock-timeout 5s work"},
		{"popfetch work check", "popfetch work check"},
		{"popfetch -d 300 work", "popfetch -d 300 work"},
		{"popfetch work -d 5m", "popfetch -d 5m work"},
		{"popfetch daemon work --interval 1m", "popfetch daemon --interval 1m work"},
		{"popfetch status --json work", "popfetch status --json work"},
	}
	for _, tt := range tests {
		got := strings.Join(permute(app, strings.Fields(tt.in)), " ")
		if got != tt.want {
			t.Errorf("permute(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestExitCodeOf: one table maps errors to exit codes; a command's own
// status travels as an exitStatus; an error nobody classified is an
// internal error (23), not a configuration error.
func TestExitCodeOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, exitMail},
		{exitStatus(exitNoMail), exitNoMail},
		{fmt.Errorf("wrapped: %w", exitStatus(exitFetchLimit)), exitFetchLimit},
		{usageError{"bad flag"}, exitConfig},
		{&fetch.Error{Kind: fetch.KindAuth, Err: errors.New("x")}, exitAuth},
		{&fetch.Error{Kind: fetch.KindLocked, Err: errors.New("x")}, exitMailboxLocked},
		{uidstore.ErrLocked, exitStateLocked},
		{errors.New("something nobody classified"), exitInternal},
	} {
		if got := exitCodeOf(tc.err); got != tc.want {
			t.Errorf("exitCodeOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
