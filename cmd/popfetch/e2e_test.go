package main

import (
	"bytes"
	"context"
	"errors"
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

	"github.com/popfetch/popfetch/cmd/internal/dovecot"
)

// These tests run the built popfetch binary against a private Dovecot.
// Outside CI they are skipped, loudly, when Dovecot is missing or the
// tests do not run as root; with CI=true they must run.

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// popfetchBinary builds cmd/popfetch once per test run.
func popfetchBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "popfetch-bin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "popfetch")
		// Built as make build builds it: static, without cgo, without
		// urfave/cli's Markdown writers.
		cmd := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-o", buildOnce.path, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

func startDovecot(t *testing.T) *dovecot.Server {
	t.Helper()
	return startDovecotWith(t, dovecot.Options{})
}

func startDovecotWith(t *testing.T, opts dovecot.Options) *dovecot.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the private Dovecot test")
	}
	s, err := dovecot.StartWith(context.Background(), opts)
	if errors.Is(err, dovecot.ErrNotInstalled) || errors.Is(err, dovecot.ErrNotRoot) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must run the Dovecot end-to-end tests: %v", err)
		}
		t.Skipf("SKIPPING end-to-end test against Dovecot: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// e2e is one user on the private Dovecot and a popfetch set up for it.
type e2e struct {
	t       *testing.T
	dc      *dovecot.Server
	bin     string
	dir     string
	config  string
	maildir string
	user    string
	sent    map[string][]byte // Message-ID -> the message as delivered to the server
}

func newE2E(t *testing.T, dc *dovecot.Server, user, mode, extra string) *e2e {
	t.Helper()
	if err := dc.AddUser(user, "pw-"+user); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e := &e2e{t: t, dc: dc, bin: popfetchBinary(t), dir: dir, config: filepath.Join(dir, "config.toml"),
		maildir: filepath.Join(dir, "Mail"), user: user, sent: map[string][]byte{}}
	var tlsLines string
	port := dc.PlainPort
	switch mode {
	case "none":
		tlsLines = "tls = \"none\"\nallow_insecure_auth = true"
	case "starttls":
		tlsLines = fmt.Sprintf("tls = \"starttls\"\nca_file = %q", dc.CertFile)
	case "implicit":
		tlsLines = fmt.Sprintf("tls = \"implicit\"\nca_file = %q", dc.CertFile)
		port = dc.TLSPort
	}
	e.writeConfig(fmt.Sprintf(`[[account]]
name = %q
server = "127.0.0.1"
port = %d
%s
user = %q
password = "pw-%s"
maildir = %q
%s
`, user, port, tlsLines, user, user, e.maildir, extra))
	return e
}

func (e *e2e) writeConfig(text string) {
	if err := os.WriteFile(e.config, []byte(text), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// fill puts messages on the server: a set that exercises the protocol
// (dot-stuffing, long lines, no final newline, 8-bit, empty body) plus n
// plain ones of about size bytes.
func (e *e2e) fill(n, size int) {
	e.t.Helper()
	var msgs [][]byte
	add := func(body string) {
		id := fmt.Sprintf("<%d.%s@popfetch.test>", len(e.sent)+len(msgs), e.user)
		msgs = append(msgs, []byte(fmt.Sprintf("From: sender@example.com\nTo: %s@example.com\nMessage-ID: %s\nSubject: test %d\n\n%s",
			e.user, id, len(msgs), body)))
	}
	add(".starts with a dot\n..two dots\n.\nmiddle\n..\n")
	add(strings.Repeat("x", 200_000) + "\nafter a long line\n")
	add("no final newline")
	add("")
	add("8-bit: caf\xc3\xa9, \xe6\x97\xa5\xe6\x9c\xac\nbare CR\rin a line\n")
	add("tab\tand trailing spaces   \n")
	line := strings.Repeat("0123456789abcdef", 4) + "\n"
	for i := 0; i < n; i++ {
		add(strings.Repeat(line, max(1, size/len(line))))
	}
	if err := e.dc.Deliver(e.user, msgs...); err != nil {
		e.t.Fatal(err)
	}
	for _, m := range msgs {
		e.sent[messageID(m)] = m
	}
	if _, err := e.dc.Index(context.Background(), e.user, "pw-"+e.user); err != nil {
		e.t.Fatalf("index: %v\n%s", err, e.dc.LogTail())
	}
}

var messageIDRE = regexp.MustCompile(`(?m)^Message-ID: (<[^>]+>)`)

func messageID(m []byte) string {
	if sm := messageIDRE.FindSubmatch(m); sm != nil {
		return string(sm[1])
	}
	return ""
}

// run runs popfetch with args and returns its exit code and output.
func (e *e2e) run(args ...string) (int, string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	full := append([]string{"--config", e.config, "--state-dir", filepath.Join(e.dir, "state")}, args...)
	cmd := exec.CommandContext(ctx, e.bin, full...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		e.t.Fatalf("run popfetch: %v", err)
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// received returns the messages in the local Maildir by Message-ID, with
// the Received field popfetch added removed, and the number of duplicates.
func (e *e2e) received() (map[string][]byte, int) {
	got, dups, leftovers := e.receivedAll()
	if leftovers > 0 {
		e.t.Errorf("%d files left in tmp/", leftovers)
	}
	return got, dups
}

// receivedAll is received without the tmp/ check; it returns the number of
// files in tmp/ too.
func (e *e2e) receivedAll() (map[string][]byte, int, int) {
	e.t.Helper()
	got := map[string][]byte{}
	dups := 0
	eachDelivered(e.t, e.maildir, func(_ string, body []byte) {
		id := messageID(body)
		if _, ok := got[id]; ok {
			dups++
		}
		got[id] = body
	})
	tmp, _ := os.ReadDir(filepath.Join(e.maildir, "tmp"))
	return got, dups, len(tmp)
}

// eachDelivered calls fn with the file name and the content, Received
// field removed, of each message in the Maildir's new/ and cur/.
func eachDelivered(t *testing.T, maildir string, fn func(name string, body []byte)) {
	t.Helper()
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(maildir, sub))
		for _, ent := range entries {
			data, err := os.ReadFile(filepath.Join(maildir, sub, ent.Name()))
			if err != nil {
				t.Fatal(err)
			}
			fn(ent.Name(), []byte(stripReceived(string(data))))
		}
	}
}

func stripReceived(msg string) string {
	if !strings.HasPrefix(msg, "Received: ") {
		return msg
	}
	lines := strings.SplitAfter(msg, "\n")
	i := 1
	for i < len(lines) && strings.HasPrefix(lines[i], "\t") {
		i++
	}
	return strings.Join(lines[i:], "")
}

// checkAll verifies that every message sent arrived, byte for byte. POP3
// ends every message with a line break, so one that had none arrives with
// one added (RFC 1939 section 3).
func (e *e2e) checkAll() int {
	e.t.Helper()
	got, dups := e.received()
	e.compare(got)
	return dups
}

// compare checks got against what was sent.
func (e *e2e) compare(got map[string][]byte) {
	e.t.Helper()
	for id, want := range e.sent {
		if !bytes.HasSuffix(want, []byte("\n")) {
			want = append(append([]byte(nil), want...), '\n')
		}
		g, ok := got[id]
		switch {
		case !ok:
			e.t.Errorf("message %s was lost", id)
		case !bytes.Equal(g, want):
			e.t.Errorf("message %s differs: got %d bytes, want %d\n got %q\nwant %q", id, len(g), len(want), trunc(g), trunc(want))
		}
	}
	if len(got) != len(e.sent) {
		e.t.Errorf("Maildir holds %d distinct messages, sent %d", len(got), len(e.sent))
	}
}

func trunc(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

func TestDovecotEndToEnd(t *testing.T) {
	dc := startDovecot(t)
	for _, mode := range []string{"none", "starttls", "implicit"} {
		t.Run(mode, func(t *testing.T) {
			e := newE2E(t, dc, "user-"+mode, mode, "")
			e.fill(30, 4096)
			code, out := e.run("-v")
			if code != exitMail {
				t.Fatalf("exit %d\n%s\n%s", code, out, dc.LogTail())
			}
			if dups := e.checkAll(); dups != 0 {
				t.Errorf("%d duplicates", dups)
			}
			if n := dc.Count(e.user); n != 0 {
				t.Errorf("%d messages left on the server", n)
			}
			wantWith := map[string]string{"none": " with POP3 ", "starttls": " with POP3S ", "implicit": " with POP3S "}[mode]
			entries, _ := os.ReadDir(filepath.Join(e.maildir, "new"))
			first, _ := os.ReadFile(filepath.Join(e.maildir, "new", entries[0].Name()))
			if !strings.HasPrefix(string(first), "Received: from 127.0.0.1 (127.0.0.1)\n\tby ") || !strings.Contains(string(first), wantWith) {
				t.Errorf("Received field: %q", first[:min(len(first), 200)])
			}
			if code, out := e.run(); code != exitNoMail {
				t.Errorf("second run: exit %d\n%s", code, out)
			}
		})
	}
}

func TestDovecotKeepMode(t *testing.T) {
	dc := startDovecot(t)
	e := newE2E(t, dc, "keeper", "starttls", "keep = true")
	e.fill(20, 2048)
	if code, out := e.run(); code != exitMail {
		t.Fatalf("exit %d\n%s", code, out)
	}
	e.checkAll()
	code, out := e.run()
	if code != exitNoMail || !strings.Contains(out, " 0 new, 0 delivered") {
		t.Fatalf("second run: exit %d\n%s", code, out)
	}
	if n := dc.Count(e.user); n != len(e.sent) {
		t.Errorf("server holds %d messages, want %d", n, len(e.sent))
	}
	// New mail is picked up alone.
	e.fill(3, 100)
	code, out = e.run()
	if code != exitMail || !strings.Contains(out, " 9 new, 9 delivered") {
		t.Fatalf("third run: exit %d\n%s", code, out)
	}
	if dups := e.checkAll(); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

func TestDovecotWrongPassword(t *testing.T) {
	dc := startDovecot(t)
	e := newE2E(t, dc, "wrongpw", "implicit", "")
	e.fill(1, 100)
	text, _ := os.ReadFile(e.config)
	e.writeConfig(strings.Replace(string(text), `password = "pw-wrongpw"`, `password = "not-it"`, 1))
	code, out := e.run()
	if code != exitAuth {
		t.Fatalf("exit %d, want %d\n%s", code, exitAuth, out)
	}
	if strings.Contains(out, "not-it") {
		t.Errorf("output shows the password:\n%s", out)
	}
	if n := dc.Count(e.user); n != len(e.sent) {
		t.Errorf("server lost mail: %d", n)
	}
}

func TestDovecotCertificateRefused(t *testing.T) {
	dc := startDovecot(t)
	e := newE2E(t, dc, "nocert", "implicit", "")
	e.fill(1, 100)
	text, _ := os.ReadFile(e.config)
	// Without ca_file the self-signed certificate is not trusted.
	e.writeConfig(regexp.MustCompile(`(?m)^ca_file = .*$`).ReplaceAllString(string(text), ""))
	code, out := e.run()
	if code != exitSocket || !strings.Contains(out, "certificate refused") || !strings.Contains(out, "SHA-256 ") {
		t.Fatalf("exit %d, want %d\n%s", code, exitSocket, out)
	}
	// The error names the fingerprint presented; pinning it is enough.
	fp := regexp.MustCompile(`SHA-256 ([0-9A-F:]{95})`).FindStringSubmatch(out)
	if fp == nil {
		t.Fatalf("no fingerprint in %q", out)
	}
	pinned := regexp.MustCompile(`(?m)^ca_file = .*$`).ReplaceAllString(string(text), fmt.Sprintf("tls_fingerprint = %q", fp[1]))
	e.writeConfig(pinned)
	if code, out := e.run(); code != exitMail {
		t.Fatalf("pinned: exit %d\n%s", code, out)
	}
	// Another pin is refused, and says what it expected.
	other := "00"
	if fp[1][:2] == other {
		other = "11"
	}
	e.writeConfig(strings.Replace(pinned, fp[1][:2], other, 1))
	if code, out := e.run(); code != exitSocket || !strings.Contains(out, "(tls_fingerprint)") {
		t.Fatalf("wrong pin: exit %d\n%s", code, out)
	}
	// A malformed pin is a configuration error.
	e.writeConfig(strings.Replace(pinned, fp[1], "abc", 1))
	if code, out := e.run(); code != exitConfig || !strings.Contains(out, "64 hex digits") {
		t.Fatalf("malformed pin: exit %d\n%s", code, out)
	}
}

// TestDovecotKillMidFetch kills popfetch with SIGKILL while it fetches,
// several times at different points, then lets it finish: no message may
// be lost.
func TestDovecotKillMidFetch(t *testing.T) {
	dc := startDovecot(t)
	e := newE2E(t, dc, "killed", "none", "")
	e.fill(600, 4096)
	newDir := filepath.Join(e.maildir, "new")
	kills := 0
	for _, after := range []int{1, 150, 300, 450} {
		cmd := exec.Command(e.bin, "--config", e.config, "--state-dir", filepath.Join(e.dir, "state"), "-q")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		deadline := time.After(60 * time.Second)
	wait:
		for {
			entries, _ := os.ReadDir(newDir)
			if len(entries) >= after {
				cmd.Process.Signal(syscall.SIGKILL)
				kills++
				<-done
				break
			}
			select {
			case <-done:
				break wait // finished before we could kill it
			case <-deadline:
				cmd.Process.Kill()
				t.Fatal("popfetch made no progress")
			case <-time.After(time.Millisecond):
			}
		}
		// Dovecot may keep the killed session's mailbox lock briefly.
		time.Sleep(50 * time.Millisecond)
	}
	var code int
	var out string
	for i := 0; i < 5; i++ {
		if code, out = e.run(); code == exitMail || code == exitNoMail {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if code != exitMail && code != exitNoMail {
		t.Fatalf("final run: exit %d\n%s", code, out)
	}
	got, dups, leftovers := e.receivedAll()
	e.compare(got)
	if n := dc.Count(e.user); n != 0 {
		t.Errorf("%d messages left on the server", n)
	}
	// A Maildir message becomes visible only after its pending record is
	// committed, and the next run settles pending records before it
	// fetches: nothing is delivered twice, and nothing is left in tmp/.
	t.Logf("SIGKILL %d times during a %d-message fetch: 0 lost, %d delivered twice, %d partial files in tmp/",
		kills, len(e.sent), dups, leftovers)
	if dups > 0 || leftovers > 0 {
		t.Errorf("%d duplicates, %d files in tmp/ after %d kills", dups, leftovers, kills)
	}
}

// TestDovecotShortcut: against Dovecot, a no-new-mail poll of a kept
// mailbox is STAT, UIDL 1 and UIDL n, new mail is asked for by number,
// and a message deleted on the server makes the poll list in full.
func TestDovecotShortcut(t *testing.T) {
	dc := startDovecot(t)
	e := newE2E(t, dc, "shortcut", "starttls", "keep = true")
	e.fill(20, 512)
	path := func(out string) string {
		probed := strings.Contains(out, "C: UIDL 1\n")
		listed := regexp.MustCompile(`(?m)C: UIDL$`).MatchString(out)
		return map[[2]bool]string{{true, false}: "shortcut", {false, true}: "full", {true, true}: "probe+full"}[[2]bool{probed, listed}]
	}
	run := func(wantCode int, wantPath, wantStats string) {
		t.Helper()
		code, out := e.run("-vv")
		if code != wantCode || path(out) != wantPath || !strings.Contains(out, wantStats) {
			t.Fatalf("exit %d, %s, want %d, %s, %q\n%s", code, path(out), wantCode, wantPath, wantStats, out)
		}
	}
	run(exitMail, "full", " 26 new, 26 delivered")
	run(exitNoMail, "shortcut", "26 messages on the server, 0 new")
	e.fill(2, 100) // 6 + 2 more
	run(exitMail, "shortcut", " 8 new, 8 delivered")
	run(exitNoMail, "shortcut", "34 messages on the server, 0 new")
	if dups := e.checkAll(); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	// Another client deletes a message: the count shrinks.
	entries, err := os.ReadDir(filepath.Join(dc.Maildir(e.user), "cur"))
	if err != nil || len(entries) == 0 {
		entries, err = os.ReadDir(filepath.Join(dc.Maildir(e.user), "new"))
	}
	if err != nil || len(entries) == 0 {
		t.Fatalf("the server's Maildir: %v", err)
	}
	for _, sub := range []string{"cur", "new"} {
		if os.Remove(filepath.Join(dc.Maildir(e.user), sub, entries[0].Name())) == nil {
			break
		}
	}
	run(exitNoMail, "probe+full", "33 messages on the server, 0 new")
	run(exitNoMail, "shortcut", "33 messages on the server, 0 new")
}
