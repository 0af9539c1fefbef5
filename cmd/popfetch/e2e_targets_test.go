package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/cmd/internal/dovecot"
)

// retarget replaces the Maildir of e's config by other target keys.
func (e *e2e) retarget(keys string) {
	e.t.Helper()
	data, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	line := fmt.Sprintf("maildir = %q\n", e.maildir)
	if !bytes.Contains(data, []byte(line)) {
		e.t.Fatalf("no %q in the config", line)
	}
	e.writeConfig(strings.Replace(string(data), line, keys+"\n", 1))
}

// traceFields matches the trace fields delivery puts on top of a message.
var traceFields = regexp.MustCompile(`^(?:(?:Return-Path|Delivered-To|Received|X-Envelope-To): [^\n]*\n(?:[ \t][^\n]*\n)*)+`)

// TestDovecotLMTP fetches from one Dovecot user and delivers over LMTP to
// another, through Dovecot's LMTP service: every message arrives once,
// byte for byte below the trace fields; a message over the recipient's
// quota is refused temporarily and stays on the POP3 server.
func TestDovecotLMTP(t *testing.T) {
	dc := startDovecotWith(t, dovecot.Options{LMTP: true, Quota: 1 << 20})
	e := newE2E(t, dc, "lmtp-src", "none", "")
	e.retarget(fmt.Sprintf("lmtp = %q\nlmtp_recipients = [\"lmtp-dest\"]", dc.LMTPSocket))
	e.fill(20, 4096)
	code, out := e.run("-v")
	if code != exitMail {
		t.Fatalf("exit %d\n%s\n%s", code, out, dc.LogTail())
	}
	got := map[string][]byte{}
	eachDelivered(t, dc.Maildir("lmtp-dest"), func(name string, body []byte) {
		// Dovecot's LMTP put Return-Path, Delivered-To and its Received
		// on top of popfetch's Received.
		head := traceFields.Find(body)
		if !bytes.Contains(head, []byte("Delivered-To: lmtp-dest")) || !bytes.Contains(head, []byte("with LMTP")) {
			t.Errorf("%s: not delivered by Dovecot's LMTP to lmtp-dest: %q", name, head)
		}
		id := messageID(body)
		if _, ok := got[id]; ok {
			t.Errorf("message %s delivered twice", id)
		}
		got[id] = body[len(head):]
	})
	e.compare(got)
	if n := dc.Count("lmtp-src"); n != 0 {
		t.Errorf("%d messages left on the POP3 server", n)
	}

	// Over quota: 452 4.2.2, temporary; the message stays on the server,
	// poll after poll, and nothing already delivered comes again.
	big := fmt.Sprintf("From: sender@example.com\nMessage-ID: <big@popfetch.test>\nSubject: big\n\n%s\n", strings.Repeat("q", 2<<20))
	if err := dc.Deliver("lmtp-src", []byte(big)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		code, out = e.run()
		if code != exitDelivery || !strings.Contains(out, "452") || !strings.Contains(strings.ToLower(out), "quota") {
			t.Fatalf("over quota: exit %d, want %d with the server's 452 reply:\n%s", code, exitDelivery, out)
		}
		if n := dc.Count("lmtp-src"); n != 1 {
			t.Fatalf("%d messages on the POP3 server after a refused delivery, want 1", n)
		}
	}
	if n := dc.Count("lmtp-dest"); n != len(e.sent) {
		t.Errorf("lmtp-dest holds %d messages, want %d", n, len(e.sent))
	}
}

// TestDovecotMbox fetches from Dovecot into an mbox: every message once,
// byte for byte after mboxrd unquoting, with the From line's sender and
// the Delivered-To field asked for.
func TestDovecotMbox(t *testing.T) {
	dc := startDovecot(t)
	e := newE2E(t, dc, "mbox-user", "none", "")
	mbox := filepath.Join(e.dir, "mail", "inbox")
	e.retarget(fmt.Sprintf("mbox = %q\ndelivered_to = true\nrecipient = \"me@example.org\"", mbox))
	e.fill(50, 4096)
	quoting := []byte("From: sender@example.com\nMessage-ID: <from-lines@popfetch.test>\nSubject: From lines\n\nFrom the start\n>From quoted\n>>From twice\nFrom\n")
	if err := dc.Deliver(e.user, quoting); err != nil {
		t.Fatal(err)
	}
	e.sent["<from-lines@popfetch.test>"] = quoting
	for i := 0; i < 2; i++ { // the second run finds nothing new
		if code, out := e.run(); code != exitMail && !(i == 1 && code == exitNoMail) {
			t.Fatalf("run %d: exit %d\n%s", i, code, out)
		}
	}
	data, err := os.ReadFile(mbox)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	fromLine := regexp.MustCompile(`^From sender@example\.com [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \d{4}\n`)
	quoted := regexp.MustCompile(`(?m)^>(>*From )`)
	// Every message ends with a line end and a blank line: without the
	// last one's, every part lacks just its final line end.
	for _, part := range strings.Split("\n\n"+strings.TrimSuffix(string(data), "\n\n"), "\n\nFrom ")[1:] {
		part = "From " + part
		if !fromLine.MatchString(part) {
			t.Errorf("bad From line: %q", trunc([]byte(part)))
			continue
		}
		body := part[len(fromLine.FindString(part)):]
		if !strings.HasPrefix(body, "Delivered-To: me@example.org\nReceived: ") {
			t.Errorf("no Delivered-To field first: %q", trunc([]byte(body)))
		}
		body = strings.TrimPrefix(body, "Delivered-To: me@example.org\n")
		body = quoted.ReplaceAllString(stripReceived(body), "$1") + "\n"
		id := messageID([]byte(body))
		if _, ok := got[id]; ok {
			t.Errorf("message %s twice in the mbox", id)
		}
		got[id] = []byte(body)
	}
	e.compare(got)
	if _, err := os.Stat(mbox + ".lock"); err == nil {
		t.Error("dot-lock left behind")
	}
}
