package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// runStdin is cliFixture.run with standard input.
func (f *cliFixture) runStdin(stdin string, args ...string) (int, string, string) {
	f.t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	full := append([]string{"popfetch", "--config", f.config, "--state-dir", f.stateDir}, args...)
	code := run(ctx, &proc{notify: notifySignals, stdin: strings.NewReader(stdin)}, full, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestUIDLExportImportForget(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 3, "keep = true")
	if code, _, stderr := f.run(); code != exitMail {
		t.Fatalf("fetch: exit %d\n%s", code, stderr)
	}
	code, out, stderr := f.run("uidl", "export", "test")
	if code != exitMail || out != "u1\nu2\nu3\n" {
		t.Fatalf("export: exit %d, %q\n%s", code, out, stderr)
	}
	// Forget one: it is fetched again.
	if code, _, stderr := f.run("uidl", "forget", "test", "u2"); code != exitMail || !strings.Contains(stderr, "forgot 1 UID;") {
		t.Fatalf("forget: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := f.run(); code != exitMail || f.countMaildir() != 4 {
		t.Fatalf("fetch after forget: exit %d, %d messages\n%s", code, f.countMaildir(), stderr)
	}
	// Forget all, then import from standard input (CRLF and empty lines
	// allowed): nothing is fetched.
	if code, _, stderr := f.run("uidl", "forget", "--all", "test"); code != exitMail || !strings.Contains(stderr, "forgot 3 UIDs") {
		t.Fatalf("forget --all: exit %d\n%s", code, stderr)
	}
	if _, out, _ := f.run("uidl", "export", "test"); out != "" {
		t.Fatalf("export after forget --all: %q", out)
	}
	code, _, stderr = f.runStdin("u1\r\nu2\n\nu3\n", "uidl", "import", "test")
	if code != exitMail || !strings.Contains(stderr, "recorded 3 UIDs (0 of them were recorded already)") {
		t.Fatalf("import: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := f.run(); code != exitNoMail || f.countMaildir() != 4 {
		t.Fatalf("fetch after import: exit %d, %d messages\n%s", code, f.countMaildir(), stderr)
	}
	// Import as arguments: a UID outside RFC 1939 is recorded in the
	// form a poll reads it (pop3.CanonicalUID); a round trip through
	// export is the identity.
	f.run("uidl", "import", "test", "u1", "extra uid with spaces")
	_, out, _ = f.run("uidl", "export", "test")
	if out != "u1\nu2\nu3\n§extra%20uid%20with%20spaces\n" {
		t.Errorf("export = %q", out)
	}
	f.run("uidl", "forget", "test", "u1")
	f.runStdin(out, "uidl", "import", "test")
	if _, again, _ := f.run("uidl", "export", "test"); again != out {
		t.Errorf("export, import, export: %q, then %q", out, again)
	}
	if _, _, stderr := f.run("uidl", "forget", "test", "extra uid with spaces"); !strings.Contains(stderr, "forgot 1 UID;") {
		t.Errorf("forget by the raw form: %s", stderr)
	}

	for _, args := range [][]string{
		{"uidl"},
		{"uidl", "export"},
		{"uidl", "list", "test"},
		{"uidl", "export", "test", "u1"},
		{"uidl", "forget", "test"},
		{"uidl", "forget", "--all", "test", "u1"},
		{"uidl", "export", "nosuchaccount"},
	} {
		if code, _, stderr := f.run(args...); code != exitConfig {
			t.Errorf("%q: exit %d, want %d\n%s", args, code, exitConfig, stderr)
		}
	}
	if code, _, stderr := f.runStdin(strings.Repeat("x", maxUIDLine+1)+"\n", "uidl", "import", "test"); code != exitConfig {
		t.Errorf("an endless line: exit %d\n%s", code, stderr)
	}
}

func TestConfigCheck(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 0, "keep = true")
	code, out, stderr := f.run("config", "check")
	if code != exitMail || !strings.Contains(out, `name = "test"`) || !strings.Contains(out, "keep = true") ||
		!strings.Contains(out, `password = "********"`) || strings.Contains(out, "wonderland") {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	if code, _, _ := f.run("config", "check", "nosuch"); code != exitConfig {
		t.Errorf("unknown account: exit %d", code)
	}
	if code, _, _ := f.run("config"); code != exitConfig {
		t.Errorf("no operation: exit %d", code)
	}
	f.writeConfig("[[account]]\nname = \"x\"\n", 0o600)
	if code, _, stderr := f.run("config", "check"); code != exitConfig || !strings.Contains(stderr, "server is missing") {
		t.Errorf("a bad config: exit %d\n%s", code, stderr)
	}
	f.writeConfig("[[account]]\nname = \"x\"\nserver = \"h\"\nuser = \"u\"\npassword = \"p\"\nmaildir = \"/tmp/m\"\n", 0o644)
	if code, _, _ := f.run("config", "check"); code != exitPermissions {
		t.Errorf("a readable config with a password: exit %d", code)
	}
}

func TestList(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{Pipelining: true}, 3, "keep = true\nfetch_limit = 1")
	f.srv.Add(pop3test.Message{UID: "evil\x1b[2J", Data: []byte("From: =?utf-8?q?J=C3=B6rg?= <j@example.com>\nSubject: =?utf-8?b?w6TDtsO8?=\x1b]0;x\n\nbody\n")})
	if code, _, stderr := f.run(); code != exitFetchLimit {
		t.Fatalf("fetch: exit %d\n%s", code, stderr)
	}
	retr := f.srv.Count("RETR")
	code, out, stderr := f.run("list", "test")
	if code != exitMail || !strings.Contains(stderr, "4 messages, 3 new") {
		t.Fatalf("list: exit %d\n%s\n%s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "NUMBER") || !strings.Contains(lines[1], "u1") ||
		!strings.Contains(lines[1], "delivered "+time.Now().Format(time.DateOnly)) || !strings.Contains(lines[2], "new") {
		t.Fatalf("list:\n%s", out)
	}
	if strings.Contains(out, "\x1b") || !strings.Contains(lines[4], "§evil%1B[2J") {
		t.Errorf("a UID's control characters reached the terminal:\n%q", out)
	}
	code, out, _ = f.run("list", "--headers", "test")
	if code != exitMail || !strings.Contains(out, "test 2") || !strings.Contains(out, "Jörg <j@example.com>") ||
		!strings.Contains(out, "äöü") || strings.Contains(out, "\x1b") {
		t.Fatalf("list --headers: exit %d\n%q", code, out)
	}
	if f.srv.Count("RETR") != retr || f.srv.Count("DELE") != 0 || f.srv.Count("TOP") != 4 {
		t.Errorf("list sent RETR %d (after %d), DELE %d, TOP %d", f.srv.Count("RETR"), retr, f.srv.Count("DELE"), f.srv.Count("TOP"))
	}
	// The one account of the file needs no name.
	if code, out, stderr := f.run("list"); code == exitConfig || !strings.Contains(out, "NUMBER") {
		t.Errorf("list without an account's name: exit %d\n%s%s", code, out, stderr)
	}
}
