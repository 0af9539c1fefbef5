package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// TestTimeoutNamesServerAndStep: a server that stops answering at one
// step of the session makes the built binary say, in one line, how long
// it waited, for which server, and for what; never the password; exit 2.
func TestTimeoutNamesServerAndStep(t *testing.T) {
	cert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		cfg   pop3test.Config
		extra string
		fault pop3test.Fault
		doing string
	}{
		{"greeting", pop3test.Config{}, "", pop3test.Fault{Command: "GREETING", Action: pop3test.Mute}, "reading the greeting"},
		{"CAPA", pop3test.Config{}, "", pop3test.Fault{Command: "CAPA", Action: pop3test.Mute}, "reading the reply to CAPA"},
		{"STLS", pop3test.Config{STLS: cert.ServerConfig()}, "tls = \"starttls\"\n", pop3test.Fault{Command: "STLS", Action: pop3test.Mute}, "reading the reply to STLS"},
		{"STLS handshake", pop3test.Config{STLS: cert.ServerConfig()}, "tls = \"starttls\"\n",
			pop3test.Fault{Command: "STLS", Action: pop3test.Mute, Reply: "+OK begin TLS"}, "the TLS handshake after STLS"},
		{"USER", pop3test.Config{}, "", pop3test.Fault{Command: "USER", Action: pop3test.Mute}, "reading the reply to USER"},
		{"PASS", pop3test.Config{}, "", pop3test.Fault{Command: "PASS", Action: pop3test.Mute}, "reading the reply to PASS)"},
		{"UIDL", pop3test.Config{}, "", pop3test.Fault{Command: "UIDL", Action: pop3test.Mute}, "reading the reply to UIDL"},
		{"RETR", pop3test.Config{}, "", pop3test.Fault{Command: "RETR", Nth: 2, Action: pop3test.Mute}, "reading the reply to RETR 2"},
		{"RETR pipelined", pop3test.Config{Pipelining: true}, "", pop3test.Fault{Command: "RETR", Nth: 2, Action: pop3test.Mute}, "reading the reply to RETR 2"},
		{"DELE", pop3test.Config{}, "", pop3test.Fault{Command: "DELE", Action: pop3test.Mute}, "reading the reply to DELE 1"},
		{"QUIT", pop3test.Config{}, "", pop3test.Fault{Command: "QUIT", Action: pop3test.Mute}, "reading the reply to QUIT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newCLIFixture(t, tc.cfg, 2, "")
			account := pop3testAccount("test", f.srv.Addr(), f.maildir, "timeout = \"1s\"\n"+tc.extra)
			if tc.extra != "" {
				account = strings.Replace(account, "tls = \"none\"\n", fmt.Sprintf("tls_fingerprint = %q\n", fetch.Fingerprint(cert.Leaf())), 1)
			}
			f.writeConfig(account, 0o600)
			f.srv.SetFaults(tc.fault)
			code, _, stderr, _ := f.runBin()
			want := fmt.Sprintf("timed out after 1s waiting for %s (%s", f.srv.Addr(), tc.doing)
			if !strings.Contains(stderr, want) {
				t.Errorf("the error does not say %q:\n%s", want, stderr)
			}
			if strings.Contains(stderr, "deadline exceeded") || strings.Contains(stderr, "wonderland") {
				t.Errorf("the error shows a Go error text or the password:\n%s", stderr)
			}
			// Once a message is delivered the run succeeded (exit 0), as
			// fetchmail's does; the error is still logged.
			wantCode := exitSocket
			if tc.fault.Command == "RETR" || tc.fault.Command == "DELE" || tc.fault.Command == "QUIT" {
				wantCode = exitMail
			}
			if code != wantCode {
				t.Errorf("exit %d, want %d", code, wantCode)
			}
		})
	}
}

// silentListener accepts connections and, if greeting is set, sends it;
// then it says nothing until the client hangs up.
func silentListener(t *testing.T, greeting string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte(greeting))
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestTLSOnPlainPort: tls = "implicit" (the default) against a port that
// speaks plain POP3 says that the server does not speak TLS on that port
// and what to set; a server that says nothing times out in the handshake.
func TestTLSOnPlainPort(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 0, "")
	addr := silentListener(t, "+OK POP3 server ready\r\n")
	_, port, _ := net.SplitHostPort(addr)
	f.writeConfig(strings.Replace(pop3testAccount("test", addr, f.maildir, "timeout = \"2s\"\n"), "tls = \"none\"\n", "", 1), 0o600)
	code, _, stderr, _ := f.runBin()
	want := fmt.Sprintf(`the server answered in plain text: it does not speak TLS on port %s: use tls = "starttls"`, port)
	if code != exitSocket || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, want %d and the error saying %q:\n%s", code, exitSocket, want, stderr)
	}

	silent := silentListener(t, "")
	f.writeConfig(strings.Replace(pop3testAccount("test", silent, f.maildir, "timeout = \"1s\"\n"), "tls = \"none\"\n", "", 1), 0o600)
	code, _, stderr, _ = f.runBin()
	want = fmt.Sprintf("timed out after 1s waiting for %s (the TLS handshake)", silent)
	if code != exitSocket || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, want %d and the error saying %q:\n%s", code, exitSocket, want, stderr)
	}
}

// fingerprintRE finds the tls_fingerprint line a refused certificate's
// error suggests.
var fingerprintRE = regexp.MustCompile(`tls_fingerprint = "([0-9A-F:]+)"`)

// TestRefusedCertificateSaysHowToTrustIt: a self-signed certificate is
// refused with the ways to trust it: ca_file, or tls_fingerprint with the
// leaf's real SHA-256 in the form that key takes (the suggested line,
// pasted into the file, works), and the warning to check it out of band.
// A pinned fingerprint the server no longer matches says how to re-pin.
func TestRefusedCertificateSaysHowToTrustIt(t *testing.T) {
	cert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	f := newCLIFixture(t, pop3test.Config{TLS: cert.ServerConfig()}, 1, "")
	base := strings.Replace(pop3testAccount("test", f.srv.Addr(), f.maildir, "timeout = \"5s\"\n"), "tls = \"none\"\n", "", 1)
	f.writeConfig(base, 0o600)
	code, _, stderr, _ := f.runBin()
	if code != exitSocket {
		t.Fatalf("exit %d, want %d:\n%s", code, exitSocket, stderr)
	}
	for _, want := range []string{"ca_file = ", "out of band", "an attacker's certificate would be shown here the same way"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the error does not say %q:\n%s", want, stderr)
		}
	}
	m := fingerprintRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no tls_fingerprint line suggested:\n%s", stderr)
	}
	if want := fetch.Fingerprint(cert.Leaf()); m[1] != want {
		t.Fatalf("suggested fingerprint %s, the leaf's SHA-256 is %s", m[1], want)
	}
	f.writeConfig(base+m[0]+"\n", 0o600)
	if code, _, stderr, _ := f.runBin(); code != exitMail {
		t.Fatalf("with the suggested %s: exit %d, want 0:\n%s", m[0], code, stderr)
	}

	other, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	f.writeConfig(base+fmt.Sprintf("tls_fingerprint = %q\n", fetch.Fingerprint(other.Leaf())), 0o600)
	code, _, stderr, _ = f.runBin()
	if code != exitSocket || !strings.Contains(stderr, "pin the new one with "+m[0]) || !strings.Contains(stderr, "out of band") {
		t.Errorf("a pin the server does not match: exit %d, want %d and how to re-pin:\n%s", code, exitSocket, stderr)
	}
}

// TestConfigProblemsAllAtOnce: the built binary reports every problem of
// a file in one run, types and unknown keys and failed checks alike, and
// control characters the file holds reach the terminal escaped.
func TestConfigProblemsAllAtOnce(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 0, "")
	f.writeConfig(pop3testAccount("test", f.srv.Addr(), f.maildir, `keep = "yes"
add_received = "no"
fetch_limit = -1
timeout = "soon"
"kep\u001b[2J" = true
mda = ["procmail", 3]
`)+`
[[account]]
name = 2
server = "127.0.0.1"
user = "alice"
password = "wonderland"
maildir = "/tmp/Mail"
fetch_all = "\u001b]52;c;x\u0007"
`, 0o600)
	for _, args := range [][]string{nil, {"config", "check"}} {
		code, _, stderr, _ := f.runBin(args...)
		if code != exitConfig {
			t.Errorf("popfetch %v: exit %d, want %d:\n%s", args, code, exitConfig, stderr)
		}
		for _, want := range []string{
			`account[1].keep: expected true or false, found "yes"`,
			`account[1].add_received: expected true or false, found "no"`,
			`account[1].timeout: bad duration "soon"`,
			`account[1].kep\x1b[2J: unknown key`,
			`account[1] ("test"): set one delivery target, not maildir and mda`,
			`account[1].mda: command element 2: expected a string, found 3`,
			`fetch_limit -1 is negative`,
			`account[2].fetch_all: expected true or false, found "\x1b]52;c;x\a"`,
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("popfetch %v does not say %q:\n%s", args, want, stderr)
			}
		}
		if found := controlsIn(stderr); len(found) > 0 {
			t.Errorf("raw %s reached the terminal:\n%s", strings.Join(found, " "), stderr)
		}
	}
}

// TestHelpAndUnknownNames: help [COMMAND] works; a word that is neither
// a command nor an account says so and suggests the nearest of both; a
// mistyped account under a command suggests the nearest account; list
// needs no name when there is one account. All through the binary.
func TestHelpAndUnknownNames(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 1, "")
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string // must appear in standard output
		stderr string // must appear in standard error
	}{
		{[]string{"help"}, exitMail, "COMMANDS:", ""},
		{[]string{"help", "fetch"}, exitMail, "popfetch fetch - poll the named accounts", ""},
		{[]string{"help", "list"}, exitMail, "popfetch list [command options] [ACCOUNT]", ""},
		{[]string{"help", "fecth"}, exitConfig, "", `no command named "fecth" (did you mean "fetch"?)`},
		{[]string{"help", "fetch", "check"}, exitConfig, "", "usage: popfetch help [COMMAND]"},
		{[]string{"fecth"}, exitConfig, "", `"fecth" is neither a command nor an account of ` + f.config + `; did you mean the command "fetch"?`},
		{[]string{"tset"}, exitConfig, "", `"tset" is neither a command nor an account of ` + f.config + `; did you mean the account "test"?`},
		{[]string{"xyzzy"}, exitConfig, "", `the commands are fetch, check,`},
		{[]string{"check", "tset"}, exitConfig, "", `no account named "tset" (did you mean "test"?)`},
		{[]string{"--fetchall"}, exitConfig, "", `unknown option --fetchall (did you mean --fetch-all?)`},
		{[]string{"list", "--hedaers"}, exitConfig, "", `unknown option --hedaers (did you mean --headers?)`},
		{[]string{"-F"}, exitConfig, "", `unknown option -F (see popfetch --help)`},
		{[]string{"check", "-d", "300"}, exitConfig, "", `-d is an option of popfetch without a command (popfetch -d ...), not of popfetch check`},
		{[]string{"uidl", "exprot", "test"}, exitConfig, "", `unknown operation "exprot" (did you mean "export"?)`},
		{[]string{"import", "fetchmal"}, exitConfig, "", `unknown tool "fetchmal" (did you mean "fetchmail"?)`},
		{[]string{"config", "chek"}, exitConfig, "", `unknown operation "chek" (did you mean "check"?)`},
		{[]string{"check"}, exitMail, "test: 1 message, 1 new", ""},
		{[]string{"list"}, exitMail, "u1", "1 message, 1 new"},
		{[]string{"fetch"}, exitMail, "", "test: 1 message on the server, 1 new, 1 delivered"},
		{[]string{"uidl", "forget", "test", "u1"}, exitMail, "", "forgot 1 UID; its message is fetched again"},
		{[]string{"uidl", "import", "test", "u1"}, exitMail, "", "recorded 1 UID (0 of them were recorded already)"},
	} {
		code, stdout, stderr, _ := f.runBin(tc.args...)
		if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("popfetch %s: exit %d, want %d; stdout should hold %q, stderr %q:\n%s%s",
				strings.Join(tc.args, " "), code, tc.code, tc.stdout, tc.stderr, stdout, stderr)
		}
	}

	// completion takes no --config: run it bare.
	if code, _, stderr := runBinaryIn(t, f.dir, "completion", "bsh"); code != exitConfig || !strings.Contains(stderr, `usage: popfetch completion bash|zsh|fish (did you mean "bash"?)`) {
		t.Errorf("completion bsh: exit %d, want %d and a suggestion:\n%s", code, exitConfig, stderr)
	}
	// The daemon's status, too, suggests the account meant.
	t.Cleanup(f.quitDaemon)
	if code, _, stderr, _ := f.runBin("-d", "3600"); code != exitMail {
		t.Fatalf("-d: exit %d\n%s", code, stderr)
	}
	if code, _, stderr, _ := f.runBin("status", "tset"); code != exitConfig || !strings.Contains(stderr, `no account named "tset" (did you mean "test"?)`) {
		t.Errorf("status tset: exit %d, want %d and a suggestion:\n%s", code, exitConfig, stderr)
	}
	f.quitDaemon()

	f.writeConfig(readFile(t, f.config)+pop3testAccount("other", f.srv.Addr(), f.maildir, ""), 0o600)
	code, _, stderr, _ := f.runBin("list")
	if want := `list needs an account's name; the accounts are "test" and "other"`; code != exitConfig || !strings.Contains(stderr, want) {
		t.Errorf("list with two accounts: exit %d, want %d and %q:\n%s", code, exitConfig, want, stderr)
	}
}

// TestSTLSOnPOP3SPort: tls = "starttls" against a port that waits for a
// TLS handshake (POP3S) times out on the greeting and says what to set;
// serverinfo, the tool for finding out, says the same, and gives the
// plain-text hint a poll gives for tls = "implicit" on a plain port.
func TestSTLSOnPOP3SPort(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 0, "")
	silent := silentListener(t, "")
	_, port, _ := net.SplitHostPort(silent)
	f.writeConfig(strings.Replace(pop3testAccount("test", silent, f.maildir, "timeout = \"1s\"\n"), "tls = \"none\"\n", "tls = \"starttls\"\n", 1), 0o600)
	want := fmt.Sprintf(`(reading the greeting); a POP3S port (usually 995) sends no greeting before a TLS handshake: if port %s is one, use tls = "implicit"`, port)
	for _, args := range [][]string{nil, {"serverinfo", "test"}} {
		code, _, stderr, _ := f.runBin(args...)
		if code != exitSocket || !strings.Contains(stderr, want) {
			t.Errorf("popfetch %v: exit %d, want %d and the error saying %q:\n%s", args, code, exitSocket, want, stderr)
		}
	}

	plain := silentListener(t, "+OK POP3 server ready\r\n")
	_, port, _ = net.SplitHostPort(plain)
	f.writeConfig(strings.Replace(pop3testAccount("test", plain, f.maildir, "timeout = \"2s\"\n"), "tls = \"none\"\n", "", 1), 0o600)
	code, _, stderr, _ := f.runBin("serverinfo", "test")
	want = fmt.Sprintf(`the server answered in plain text: it does not speak TLS on port %s: use tls = "starttls"`, port)
	if code != exitSocket || !strings.Contains(stderr, want) {
		t.Errorf("serverinfo: exit %d, want %d and the error saying %q:\n%s", code, exitSocket, want, stderr)
	}
}

// TestConfigKeyTwice: a key set twice names the key (a name, never a
// value), so that the line and column are not all there is to go on;
// a quoted key, which could be anything, stays masked.
func TestConfigKeyTwice(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 0, "")
	f.writeConfig(pop3testAccount("test", f.srv.Addr(), f.maildir, "keep = true\nkeep = false\n"), 0o600)
	code, _, stderr, _ := f.runBin()
	if code != exitConfig || !strings.Contains(stderr, "account.keep is defined twice") {
		t.Errorf("exit %d, want %d and the key named:\n%s", code, exitConfig, stderr)
	}
	f.writeConfig(pop3testAccount("test", f.srv.Addr(), f.maildir, "\"s3cret\" = 1\n\"s3cret\" = 2\n"), 0o600)
	code, _, stderr, _ = f.runBin()
	if code != exitConfig || strings.Contains(stderr, "s3cret") {
		t.Errorf("exit %d, want %d and the quoted key masked:\n%s", code, exitConfig, stderr)
	}
}

// TestErrorNamesAccountOnce: an account's error line names the account
// once, whether the poll failed (a Maildir that cannot be made) or the
// check command did (nothing listens on the port).
func TestErrorNamesAccountOnce(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 1, "")
	blocker := filepath.Join(f.dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f.writeConfig(pop3testAccount("test", f.srv.Addr(), filepath.Join(blocker, "Mail"), ""), 0o600)
	code, _, stderr, _ := f.runBin()
	if code != exitDelivery || !strings.Contains(stderr, "test: error: delivery failed: ") || strings.Contains(stderr, "test: error: test:") {
		t.Errorf("a Maildir that cannot be made: exit %d, want %d and the account named once:\n%s", code, exitDelivery, stderr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	f.writeConfig(pop3testAccount("test", closed, f.maildir, ""), 0o600)
	code, _, stderr, _ = f.runBin("check")
	if code != exitSocket || !strings.Contains(stderr, "test: error: network error: ") || strings.Contains(stderr, "test: error: test:") {
		t.Errorf("check with nothing listening: exit %d, want %d and the account named once:\n%s", code, exitSocket, stderr)
	}
}
