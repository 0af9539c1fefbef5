package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
	"github.com/popfetch/popfetch/fetch/schedule"
)

// hostile holds what a terminal acts on: an escape sequence (CSI), an
// operating system command (OSC 52 writes the clipboard) ended by BEL, a
// bare CR that would let the rest overwrite the line, the one-character
// C1 CSI (U+009B) and a right-to-left override.
const hostile = "\x1b[2J\x1b]52;c;cHduZWQ=\x07\roverwritten \u009b31m \u202etxt.exe"

// controlsIn names the raw controls of hostile found in out.
func controlsIn(out string) []string {
	var found []string
	for _, c := range []string{"\x1b", "\x07", "\r", "\u009b", "\x9b", "\u202e"} {
		if strings.Contains(out, c) {
			found = append(found, fmt.Sprintf("%q", c))
		}
	}
	return found
}

// TestHostileServerTextIsEscaped: text a server sends reaches the person
// escaped by every path that shows it: the trace (-vv), log lines of each
// format, and the error a one-shot run ends with. The server puts control
// sequences in its greeting, its -ERR to PASS, its -ERR to STLS (before
// TLS, where anyone on the path can write it), and a UID named in the
// size_limit line.
func TestHostileServerTextIsEscaped(t *testing.T) {
	cert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		cfg    pop3test.Config
		faults []pop3test.Fault
		extra  string
		code   int
	}{
		{"greeting and PASS refused", pop3test.Config{Greeting: "+OK " + hostile}, []pop3test.Fault{{Command: "PASS", Action: pop3test.Reply, Reply: "-ERR [AUTH] " + hostile}}, "", exitAuth},
		{"STLS refused", pop3test.Config{STLS: cert.ServerConfig()}, []pop3test.Fault{{Command: "STLS", Action: pop3test.Reply, Reply: "-ERR " + hostile}}, "tls = \"starttls\"\n", exitProtocol},
		{"UID in the size_limit line", pop3test.Config{}, nil, "size_limit = 10\n", exitNoMail},
		{"locked", pop3test.Config{Quirks: pop3test.Quirks{LockedReply: "-ERR mailbox locked " + hostile}}, nil, "", exitMailboxLocked},
	} {
		for _, format := range []string{"auto", "human", "text", "json"} {
			t.Run(tc.name+"/"+format, func(t *testing.T) {
				f := newCLIFixture(t, tc.cfg, 0, strings.Replace(tc.extra, "tls = \"starttls\"\n", "", 1))
				if tc.extra != "" {
					f.writeConfig(strings.Replace(pop3testAccount("test", f.srv.Addr(), f.maildir, "timeout = \"5s\"\n"+tc.extra),
						"tls = \"none\"\n", "", strings.Count(tc.extra, "tls = ")), 0o600)
				}
				f.srv.Add(pop3test.Message{UID: "uid-" + strings.ReplaceAll(hostile, " ", "_"), Data: []byte("Subject: big\n\n" + strings.Repeat("x", 100) + "\n")})
				f.srv.SetFaults(tc.faults...)
				if tc.name == "locked" {
					defer f.srv.HoldLock()()
				}
				code, stdout, stderr := f.run("-vv", "--log-format", format)
				if code != tc.code {
					t.Fatalf("exit %d, want %d\n%s", code, tc.code, stderr)
				}
				if found := controlsIn(stdout + stderr); len(found) > 0 {
					t.Errorf("raw %s reached the terminal:\n%s", strings.Join(found, " "), stderr)
				}
				if !strings.Contains(stderr, `\x1b[2J`) && !strings.Contains(stderr, `\\x1b[2J`) {
					t.Errorf("the hostile text is not shown escaped:\n%s", stderr)
				}
			})
		}
	}
}

// TestStatusAndProgressEscape: popfetch status shows a daemon's last error
// (server text) escaped; the progress line shows an account escaped.
func TestStatusAndProgressEscape(t *testing.T) {
	now := time.Now()
	st := statusFile{PID: 1, Running: true, Started: now, Accounts: []schedule.JobStatus{
		{Name: "evil" + hostile, LastEnd: now, LastResult: "server error", LastError: "pop3: PASS: -ERR " + hostile},
	}}
	var b bytes.Buffer
	printStatus(&b, st, now)
	if found := controlsIn(b.String()); len(found) > 0 {
		t.Errorf("status shows raw %s:\n%q", strings.Join(found, " "), b.String())
	}
	line := progressLine(fetch.Progress{Account: hostile, Messages: 2, Done: 1}, time.Second)
	if found := controlsIn(line); len(found) > 0 {
		t.Errorf("progress line shows raw %s: %q", strings.Join(found, " "), line)
	}
}

// TestStatusJSONEscapes: popfetch status --json shows a daemon's last
// error (server text) with the controls encoding/json leaves raw (U+009B,
// a one-character CSI, and the bidi overrides) written as \u escapes, as
// serverinfo --json does.
func TestStatusJSONEscapes(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 0, "")
	st := statusFile{PID: 1, Accounts: []schedule.JobStatus{
		{Name: "test", LastResult: "server error", LastError: "pop3: PASS: -ERR " + hostile},
	}}
	var b bytes.Buffer
	if err := encodeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(f.stateDir, 0o700)
	if err := os.WriteFile(statusPath(f.stateDir), b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := f.run("status", "--json")
	if code != exitNoMail {
		t.Fatalf("status --json: exit %d\n%s", code, stderr)
	}
	if found := controlsIn(stdout); len(found) > 0 {
		t.Errorf("status --json shows raw %s:\n%q", strings.Join(found, " "), stdout)
	}
	var back statusFile
	if err := json.Unmarshal([]byte(stdout), &back); err != nil || len(back.Accounts) != 1 ||
		back.Accounts[0].LastError != st.Accounts[0].LastError {
		t.Errorf("status --json does not read back as the status (%v):\n%s", err, stdout)
	}
}

// TestImportedMDAHostileSender: a fetchmail MDA that quotes the sender
// ("<%F>") is imported, and a message whose Return-Path is built to add
// arguments (<"a -oQ/tmp/evil"@x.example>) is fetched through it. The
// MDA gets exactly the arguments the user wrote, the sender neutralised.
func TestImportedMDAHostileSender(t *testing.T) {
	f := newCLIFixture(t, pop3test.Config{}, 0, "")
	f.srv.Add(pop3test.Message{UID: "evil", Data: []byte("Return-Path: <\"a -oQ/tmp/evil\"@x.example>\nSubject: x\n\nbody\n")})
	args := filepath.Join(f.dir, "args")
	recorder := filepath.Join(f.dir, "recorder")
	if err := os.WriteFile(recorder, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" > "+args+"\ncat > /dev/null\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(f.srv.Addr(), ":")
	rc := filepath.Join(f.dir, "fetchmailrc")
	os.WriteFile(rc, []byte(fmt.Sprintf(`poll %s service %s proto pop3 auth password
  user "alice" there with password "wonderland" is alice here
  sslproto ''
  mda "%s -f \"<%%F>\" -d %%T"
`, host, port, recorder)), 0o600)
	os.Remove(f.config) // import writes a new one
	code, _, stderr := f.run("import", "fetchmail", rc, "-o", f.config)
	if code != exitMail {
		t.Fatalf("import: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := f.run(); code != exitMail {
		t.Fatalf("fetch: exit %d\n%s", code, stderr)
	}
	got, err := os.ReadFile(args)
	if err != nil {
		t.Fatal(err)
	}
	if want := "-f\n<a_-oQ_tmp_evil@x.example>\n-d\nalice\n"; string(got) != want {
		t.Errorf("the MDA got the arguments\n%q\nwant\n%q", got, want)
	}
}

// TestDribblingServerExits2: a server that sends one octet every two
// seconds, with timeout = "3s": each run ends with exit 2 in seconds,
// whether it dribbles from the greeting on or only in a message.
func TestDribblingServerExits2(t *testing.T) {
	for _, fault := range []pop3test.Fault{
		{Command: "GREETING", Action: pop3test.Dribble, Delay: 2 * time.Second},
		{Command: "RETR", Action: pop3test.Dribble, Delay: 2 * time.Second, Bytes: 30},
	} {
		t.Run(fault.Command, func(t *testing.T) {
			f := newCLIFixture(t, pop3test.Config{}, 2, "")
			f.writeConfig(pop3testAccount("test", f.srv.Addr(), f.maildir, "timeout = \"3s\"\n"), 0o600)
			f.srv.SetFaults(fault)
			start := time.Now()
			code, _, stderr := f.run()
			if code != exitSocket {
				t.Fatalf("exit %d, want %d\n%s", code, exitSocket, stderr)
			}
			if elapsed := time.Since(start); elapsed > 15*time.Second {
				t.Errorf("the run took %v", elapsed.Round(time.Second))
			}
		})
	}
}

// TestServerEchoingThePassword: a server whose -ERR quotes the password
// it refused. Neither the error, nor the log, nor the -vv trace shows it.
func TestServerEchoingThePassword(t *testing.T) {
	for _, reply := range []struct {
		text string
		code int
	}{
		{"-ERR [AUTH] password wonderland is not right for alice", exitAuth},
		{"-ERR:password wonderland is not right for alice", exitProtocol}, // malformed: quoted whole
	} {
		for _, format := range []string{"auto", "json"} {
			f := newCLIFixture(t, pop3test.Config{}, 1, "")
			f.srv.SetFaults(pop3test.Fault{Command: "PASS", Action: pop3test.Reply, Reply: reply.text})
			code, stdout, stderr := f.run("-vv", "--log-format", format)
			if code != reply.code {
				t.Fatalf("%q: exit %d\n%s", reply.text, code, stderr)
			}
			if strings.Contains(stdout+stderr, "wonderland") {
				t.Errorf("%q: the password reached the output:\n%s", reply.text, stderr)
			}
			if !strings.Contains(stderr, "password <redacted> is not right") {
				t.Errorf("%q: the reply is not shown redacted:\n%s", reply.text, stderr)
			}
		}
	}
}
