package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popfetch/popfetch/cmd/internal/dovecot"
)

// toIMAP replaces the Maildir of e's config by an [account.imap] table
// for user on dc's IMAP listener (plain, on loopback), with more keys.
func (e *e2e) toIMAP(user, keys string) {
	e.t.Helper()
	if err := e.dc.AddUser(user, "pw-"+user); err != nil {
		e.t.Fatal(err)
	}
	data, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	line := fmt.Sprintf("maildir = %q\n", e.maildir)
	text := strings.Replace(string(data), line, "", 1)
	e.writeConfig(text + fmt.Sprintf(`
[account.imap]
server = "127.0.0.1"
port = %d
tls = "starttls"
ca_file = %q
user = %q
password = "pw-%s"
%s
`, e.dc.IMAPPort, e.dc.CertFile, user, user, keys))
}

// imapMessage is a message as read back from an IMAP folder.
type imapMessage struct {
	uid   imap.UID
	body  []byte // BODY[], CRLF as the server sends it
	date  time.Time
	flags []imap.Flag
}

// imapFolder reads every message of folder, as user, over plain IMAP.
func imapFolder(t *testing.T, dc *dovecot.Server, user, folder string) []imapMessage {
	t.Helper()
	c, err := imapclient.DialInsecure(dc.IMAPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, "pw-"+user).Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("SELECT %s: %v", folder, err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	cmd := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	var out []imapMessage
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		var m imapMessage
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				m.uid = it.UID
			case imapclient.FetchItemDataFlags:
				m.flags = it.Flags
			case imapclient.FetchItemDataInternalDate:
				m.date = it.Time
			case imapclient.FetchItemDataBodySection:
				m.body, _ = io.ReadAll(it.Literal)
			}
		}
		out = append(out, m)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// ownReceived matches the Received field popfetch puts on top.
var ownReceived = regexp.MustCompile(`^Received: [^\n]*\n(?:[ \t][^\n]*\n)*`)

// byMessageID keys messages read back by their Message-ID, with the
// Received field popfetch put on top taken off and CRLF made LF again; duplicates counts
// Message-IDs seen more than once.
func byMessageID(t *testing.T, msgs []imapMessage) (got map[string][]byte, duplicates int) {
	got = map[string][]byte{}
	for _, m := range msgs {
		if bytes.Contains(bytes.ReplaceAll(m.body, []byte("\r\n"), nil), []byte("\n")) {
			t.Errorf("UID %d: a bare LF in what the server holds: %q", m.uid, trunc(m.body))
		}
		body := bytes.ReplaceAll(m.body, []byte("\r\n"), []byte("\n"))
		head := ownReceived.Find(body) // popfetch's; the message's own stay
		id := messageID(body)
		if _, ok := got[id]; ok {
			duplicates++
		}
		got[id] = body[len(head):]
	}
	return got, duplicates
}

// TestDovecotIMAP fetches from one Dovecot user over POP3 and appends to
// another's folder over IMAP (STARTTLS): every message once, byte for
// byte below popfetch's Received field; the folder created; the flags
// asked for; the internal date taken from the message; a message over
// the quota refused temporarily, left on the POP3 server.
func TestDovecotIMAP(t *testing.T) {
	dc := startDovecotWith(t, dovecot.Options{IMAP: true, Quota: 1 << 20})
	e := newE2E(t, dc, "imap-src", "none", "")
	e.toIMAP("imap-dest", "folder = \"Fetched\"\nflags = ['\\Seen', \"popfetch\"]")
	e.fill(20, 4096)
	dated := []byte("Received: from mx.example.com by pop.example.com; Tue, 3 Mar 2020 10:00:00 +0000\n" +
		"From: sender@example.com\nDate: Wed, 4 Mar 2020 11:00:00 +0000\nMessage-ID: <dated@popfetch.test>\nSubject: dated\n\nold mail\n")
	if err := dc.Deliver("imap-src", dated); err != nil {
		t.Fatal(err)
	}
	e.sent[messageID(dated)] = dated
	code, out := e.run("-v")
	if code != exitMail {
		t.Fatalf("exit %d\n%s\n%s", code, out, dc.LogTail())
	}
	msgs := imapFolder(t, dc, "imap-dest", "Fetched")
	got, dups := byMessageID(t, msgs)
	e.compare(got)
	if dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	for _, m := range msgs {
		if !slices.Contains(m.flags, imap.FlagSeen) || !slices.Contains(m.flags, imap.Flag("popfetch")) {
			t.Errorf("UID %d has flags %v, want \\Seen and popfetch", m.uid, m.flags)
		}
		if messageID(m.body) == "<dated@popfetch.test>" {
			if want := time.Date(2020, 3, 3, 10, 0, 0, 0, time.UTC); !m.date.Equal(want) {
				t.Errorf("internal date %v, want %v (the first Received)", m.date, want)
			}
		} else if time.Since(m.date) > time.Hour {
			t.Errorf("UID %d: internal date %v for a message without dates, want now", m.uid, m.date)
		}
	}
	if n := dc.Count("imap-src"); n != 0 {
		t.Errorf("%d messages left on the POP3 server", n)
	}

	// Over quota: NO [OVERQUOTA], temporary (exit 10); the message stays
	// on the server, and nothing already delivered comes again.
	big := fmt.Sprintf("From: sender@example.com\nMessage-ID: <big@popfetch.test>\nSubject: big\n\n%s\n", strings.Repeat("q", 2<<20))
	if err := dc.Deliver("imap-src", []byte(big)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		code, out = e.run()
		if code != exitDelivery || !strings.Contains(out, "IMAP") || !strings.Contains(strings.ToLower(out), "quota") {
			t.Fatalf("over quota: exit %d, want %d naming the IMAP server and the quota:\n%s", code, exitDelivery, out)
		}
		if n := dc.Count("imap-src"); n != 1 {
			t.Fatalf("%d messages on the POP3 server after a refused delivery, want 1", n)
		}
	}
	if got, _ := byMessageID(t, imapFolder(t, dc, "imap-dest", "Fetched")); len(got) != len(e.sent) {
		t.Errorf("the folder holds %d messages, want %d", len(got), len(e.sent))
	}
}

// TestFaultKillLoopIMAP is the kill loop from the private Dovecot's POP3
// into its IMAP: SIGKILL at random moments of the fetch (connecting,
// staging, between an APPEND and its answer, before the UIDs are
// committed), then a clean run: every message is in the folder exactly
// once, found by the pending records' search where the kill left the
// outcome unknown.
func TestFaultKillLoopIMAP(t *testing.T) {
	dc := startDovecotWith(t, dovecot.Options{IMAP: true})
	runKillLoop(t, killLoopIterations(t, 50), func(i int) *killLoop {
		user, dest := fmt.Sprintf("ikill%d", i+1), fmt.Sprintf("ikill%d-dest", i+1)
		e := newE2E(t, dc, user, "none", "")
		e.toIMAP(dest, "")
		msgs := killLoopMessages(500, 1024, user)
		if err := dc.Deliver(user, msgs...); err != nil {
			t.Fatal(err)
		}
		if _, err := dc.Index(context.Background(), user, "pw-"+user); err != nil {
			t.Fatalf("index: %v", err)
		}
		box := dc.Maildir(dest)
		k := &killLoop{t: t, bin: e.bin, dir: e.dir, config: e.config, maildir: filepath.Join(e.dir, "no-maildir"),
			sent: map[string][]byte{}, left: func() int { return dc.Count(user) },
			progress: func() int { return countDir(filepath.Join(box, "new")) + countDir(filepath.Join(box, "cur")) },
			each: func(fn func(string, []byte)) {
				for _, m := range imapFolder(t, dc, dest, "INBOX") {
					body := bytes.ReplaceAll(m.body, []byte("\r\n"), []byte("\n"))
					fn(fmt.Sprintf("UID %d", m.uid), body[len(ownReceived.Find(body)):])
				}
			}}
		for _, m := range msgs {
			k.sent[messageID(m)] = m
		}
		return k
	})
}

// TestDovecotIMAPTwoAccounts: two accounts, one IMAP folder, fetched at
// the same time by two popfetch processes: each message once.
func TestDovecotIMAPTwoAccounts(t *testing.T) {
	dc := startDovecotWith(t, dovecot.Options{IMAP: true})
	if err := dc.AddUser("shared-dest", "pw-shared-dest"); err != nil {
		t.Fatal(err)
	}
	var es []*e2e
	for _, user := range []string{"two-a", "two-b"} {
		e := newE2E(t, dc, user, "none", "")
		e.toIMAP("shared-dest", `folder = "Shared"`)
		e.fill(60, 2048)
		es = append(es, e)
	}
	codes := make(chan string, len(es))
	for _, e := range es {
		go func() {
			code, out := e.run()
			codes <- fmt.Sprintf("%d %s", code, out)
		}()
	}
	for range es {
		if r := <-codes; !strings.HasPrefix(r, fmt.Sprint(exitMail)+" ") {
			t.Errorf("a run ended: %s", r)
		}
	}
	got, dups := byMessageID(t, imapFolder(t, dc, "shared-dest", "Shared"))
	if dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	for _, e := range es {
		mine := map[string][]byte{}
		for id := range e.sent {
			if b, ok := got[id]; ok {
				mine[id] = b
			}
		}
		e.compare(mine)
	}
}

// cutProxy forwards connections to addr, cutting the first one after
// limit octets in the direction chosen (up: client to server).
type cutProxy struct {
	ln    net.Listener
	addr  string
	limit int64
	up    bool
	conns atomic.Int32
}

func newCutProxy(t *testing.T, addr string, limit int64, up bool) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, addr: addr, limit: limit, up: up}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *cutProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *cutProxy) serve(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.addr)
	if err != nil {
		return
	}
	defer s.Close()
	first := p.conns.Add(1) == 1
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn, cut bool) {
		if cut && first {
			io.CopyN(dst, src, p.limit)
		} else {
			io.Copy(dst, src)
		}
		done <- struct{}{}
	}
	go pipe(s, c, p.up)
	go pipe(c, s, !p.up)
	<-done // one side ended: cut both
}

// TestDovecotIMAPCutConnection cuts the IMAP connection at many points,
// either way (in the login, the STATUS, an APPEND's literal, between an
// APPEND and its answer), then runs again on a good connection: every
// message once, none left on the POP3 server.
func TestDovecotIMAPCutConnection(t *testing.T) {
	dc := startDovecotWith(t, dovecot.Options{IMAP: true})
	cases := 0
	for _, up := range []bool{true, false} {
		for _, limit := range []int64{20, 150, 400, 3000, 15000, 40000} {
			cases++
			user := fmt.Sprintf("cut%d", cases)
			e := newE2E(t, dc, user, "none", "")
			e.toIMAP(user+"-dest", "")
			e.fill(10, 4096)
			p := newCutProxy(t, dc.IMAPAddr(), limit, up)
			good, err := os.ReadFile(e.config)
			if err != nil {
				t.Fatal(err)
			}
			e.writeConfig(strings.Replace(string(good), fmt.Sprintf("port = %d\n", dc.IMAPPort), fmt.Sprintf("port = %d\n", p.port()), 1))
			code, out := e.run()
			if code != exitMail && code != exitDelivery && code != exitSocket {
				t.Errorf("up=%v limit=%d: exit %d\n%s", up, limit, code, out)
			}
			if code != exitMail && !strings.Contains(out, "IMAP") && !strings.Contains(out, "imap") {
				t.Errorf("up=%v limit=%d: the error does not name the IMAP side:\n%s", up, limit, out)
			}
			e.writeConfig(string(good))
			if code, out := e.run(); code != exitMail && code != exitNoMail {
				t.Fatalf("up=%v limit=%d: the clean run: exit %d\n%s", up, limit, code, out)
			}
			got, dups := byMessageID(t, imapFolder(t, dc, user+"-dest", "INBOX"))
			if dups != 0 {
				t.Errorf("up=%v limit=%d: %d duplicates", up, limit, dups)
			}
			e.compare(got)
			if n := dc.Count(user); n != 0 {
				t.Errorf("up=%v limit=%d: %d messages left on the POP3 server", up, limit, n)
			}
		}
	}
}

// TestDovecotIMAPPortMismatch: an [account.imap] whose port and tls do
// not go together (implicit TLS on the STARTTLS port, STARTTLS on the
// IMAPS port, the POP3 server's ports) fails as a delivery failure
// (exit 10, the message left on the POP3 server) with an error that
// names the IMAP side and says what to change, as the POP3 side's do.
func TestDovecotIMAPPortMismatch(t *testing.T) {
	dc := startDovecotWith(t, dovecot.Options{IMAP: true})
	e := newE2E(t, dc, "imapport-src", "none", `timeout = "2s"`)
	if err := dc.AddUser("imapport-dest", "pw-imapport-dest"); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(base), fmt.Sprintf("maildir = %q\n", e.maildir), "", 1)
	e.fill(0, 0)
	for _, c := range []struct {
		name string
		port int
		tls  string
		want []string
	}{
		{"implicit on the STARTTLS port", dc.IMAPPort, "implicit",
			[]string{"the server answered in plain text (an IMAP greeting)", `use tls = "starttls" in [account.imap]`}},
		{"starttls on the IMAPS port", dc.IMAPSPort, "starttls",
			[]string{"an IMAPS port (usually 993) sends no greeting before a TLS handshake", `use tls = "implicit" in [account.imap]`}},
		{"starttls on the POP3 port", dc.PlainPort, "starttls",
			[]string{"that is a POP3 server's greeting: check the port of [account.imap]"}},
		{"implicit on the POP3 port", dc.PlainPort, "implicit",
			[]string{"the server answered in plain text, as a POP3 server does: check the port of [account.imap]"}},
		{"implicit on the POP3S port", dc.TLSPort, "implicit",
			[]string{"that is not an IMAP server's greeting: check the port of [account.imap]"}},
	} {
		e.writeConfig(text + fmt.Sprintf(`
[account.imap]
server = "127.0.0.1"
port = %d
tls = %q
ca_file = %q
user = "imapport-dest"
password = "pw-imapport-dest"
`, c.port, c.tls, dc.CertFile))
		code, out := e.run()
		if code != exitDelivery {
			t.Errorf("%s: exit %d, want %d\n%s", c.name, code, exitDelivery, out)
		}
		for _, w := range append(c.want, fmt.Sprintf("imap://imapport-dest@127.0.0.1:%d", c.port)) {
			if !strings.Contains(out, w) {
				t.Errorf("%s: the error does not say %q:\n%s", c.name, w, out)
			}
		}
		if n := dc.Count("imapport-src"); n != len(e.sent) {
			t.Fatalf("%s: %d messages on the POP3 server, want %d", c.name, n, len(e.sent))
		}
	}
}

// TestDovecotIMAPPasswordNotHad: an IMAP password popfetch cannot get (a
// password_file others can read, a password_command that fails) is not
// the IMAP server's refusal, and the error does not say it is: it names
// the password, and the exit code is the one for the cause (6 for the
// file's mode), the message left on the POP3 server.
func TestDovecotIMAPPasswordNotHad(t *testing.T) {
	dc := startDovecotWith(t, dovecot.Options{IMAP: true})
	e := newE2E(t, dc, "imappw-src", "none", "")
	e.toIMAP("imappw-dest", "")
	e.fill(0, 0)
	pwFile := filepath.Join(e.dir, "imap.pw")
	if err := os.WriteFile(pwFile, []byte("pw-imappw-dest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, key string
		code      int
		want      string
	}{
		{"a password file others can read", fmt.Sprintf("password_file = %q", pwFile), exitPermissions,
			"no login to the IMAP server: the password: " + pwFile + " holds a password but has mode 0644"},
		{"a failing password_command", `password_command = ["false"]`, exitDelivery,
			"no login to the IMAP server: the password: password_command false: exit status 1"},
	} {
		e.writeConfig(strings.Replace(string(base), `password = "pw-imappw-dest"`, c.key, 1))
		code, out := e.run()
		if code != c.code || !strings.Contains(out, c.want) || strings.Contains(out, "login refused") {
			t.Errorf("%s: exit %d, want %d with %q, not blaming the server:\n%s", c.name, code, c.code, c.want, out)
		}
		if n := dc.Count("imappw-src"); n != len(e.sent) {
			t.Fatalf("%s: %d messages on the POP3 server, want %d", c.name, n, len(e.sent))
		}
	}
}
