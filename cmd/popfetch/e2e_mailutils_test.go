package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/cmd/internal/mailutils"
)

// These tests run the built popfetch binary against a private GNU
// Mailutils pop3d, the second real server: an mbox store, MD5-based UIDs,
// header fields of its own added to what it sends, and LIST sizes that
// are not the octets RETR sends. Outside CI they are skipped, loudly, when
// pop3d is missing or the tests do not run as root; with CI=true they must
// run.

func startMailutils(t *testing.T) *mailutils.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the private Mailutils pop3d test")
	}
	s, err := mailutils.Start(context.Background(), mailutils.Options{})
	if errors.Is(err, mailutils.ErrNotInstalled) || errors.Is(err, mailutils.ErrNotRoot) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must run the Mailutils pop3d end-to-end tests: %v", err)
		}
		t.Skipf("SKIPPING end-to-end test against GNU Mailutils pop3d: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// muE2E is one virtual user on the private pop3d and a popfetch set up
// for it; the e2e part holds what the Dovecot tests share (running
// popfetch, reading the Maildir), with no Dovecot.
type muE2E struct {
	*e2e
	mu   *mailutils.Server
	name string // the user on the server; popfetch logs in as mu.Login(name)
}

// newMailutilsE2E adds user name to s and writes a config for it: mode is
// "starttls" (the listener offering STLS), "implicit" (POP3S) or "none"
// (the listener without TLS); pipelining is "auto" or "off"; extra adds
// keys to the account.
func newMailutilsE2E(t *testing.T, s *mailutils.Server, name, mode, pipelining, extra string) *muE2E {
	t.Helper()
	if err := s.AddUser(name, "pw-"+name); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m := &muE2E{e2e: &e2e{t: t, bin: popfetchBinary(t), dir: dir, config: filepath.Join(dir, "config.toml"),
		maildir: filepath.Join(dir, "Mail"), user: name, sent: map[string][]byte{}}, mu: s, name: name}
	var tlsLines string
	var port int
	switch mode {
	case "none":
		tlsLines, port = "tls = \"none\"\nallow_insecure_auth = true", s.NoTLSPort
	case "starttls":
		tlsLines, port = fmt.Sprintf("tls = \"starttls\"\nca_file = %q", s.CertFile), s.PlainPort
	case "implicit":
		tlsLines, port = fmt.Sprintf("tls = \"implicit\"\nca_file = %q", s.CertFile), s.TLSPort
	default:
		t.Fatalf("mode %q", mode)
	}
	m.writeConfig(fmt.Sprintf(`[[account]]
name = %q
server = "127.0.0.1"
port = %d
%s
user = %q
password = "pw-%s"
maildir = %q
pipelining = %q
%s
`, name, port, tlsLines, s.Login(name), name, m.maildir, pipelining, extra))
	return m
}

// deliver puts n messages on the server, after a set that exercises the
// mbox and the protocol when all is true: lines that start with "." and
// with "From " (quoted in the mbox, '>' added and removed), no final line
// break, a body that ends in empty lines, an empty body, 8-bit text and a
// bare CR, a 200 kB line, and a message of 1 MiB. The rest have varied
// sizes up to 64 kB. It returns the messages in the order delivered.
func (m *muE2E) deliver(n int, all bool) [][]byte {
	m.t.Helper()
	var msgs [][]byte
	add := func(body string) {
		id := fmt.Sprintf("<%d.%s@popfetch.test>", len(m.sent)+len(msgs), m.name)
		msgs = append(msgs, []byte(fmt.Sprintf("From: sender@example.com\nTo: %s\nMessage-ID: %s\nSubject: test %d\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\n%s",
			m.mu.Login(m.name), id, len(m.sent)+len(msgs), body)))
	}
	if all {
		add(".starts with a dot\n..two dots\n.\nmiddle\n..\n. \n")
		add("From the first line of the body\nFrom here\n>From there\n>>From  far\nFrom\nFromage\n\nFrom after an empty line\n")
		add("no final newline")
		add("ends with empty lines\n\n\n")
		add("")
		add("8-bit: caf\xc3\xa9, \xe6\x97\xa5\xe6\x9c\xac\ntab\tand trailing spaces   \nbare CR\rin a line\n")
		add(strings.Repeat("x", 200_000) + "\nafter a long line\n")
		add(strings.Repeat("The quick brown fox jumps over the lazy dog. 0123456789 ABCDEFGHIJ\n", (1<<20)/68) + "From the end of the big one\n")
	}
	line := strings.Repeat("0123456789abcdef", 4) + "\n"
	for i := range n {
		// 65 octets to 64 kB, none the same.
		lines := 1 + (i*7919)%1000
		add(strings.Repeat(line, lines) + "." + strconv.Itoa(i) + "\n")
	}
	if err := m.mu.Deliver(m.name, msgs...); err != nil {
		m.t.Fatal(err)
	}
	for _, msg := range msgs {
		m.sent[messageID(msg)] = msg
	}
	return msgs
}

// count is the number of messages in the user's mbox on the server.
func (m *muE2E) count() int {
	m.t.Helper()
	n, err := m.mu.Count(m.name)
	if err != nil {
		m.t.Fatal(err)
	}
	return n
}

// The header fields pop3d adds to the messages it sends, at the end of the
// header (found by experiment, pop3d 3.15; see package mailutils):
//
//   - X-UIDL, the message's UID, once the session has asked for the UIDs,
//     which popfetch always does: on every message popfetch fetches;
//   - X-IMAPbase (first message only), X-UID and Status, once a session
//     has rewritten the mbox, which every session that opens it does at
//     its end.
//
// Nothing else may differ from the message delivered, but popfetch's own
// Received field (see stripReceived).
const (
	fieldXUIDL     = "X-UIDL"
	fieldXIMAPbase = "X-IMAPbase"
	fieldXUID      = "X-UID"
	fieldStatus    = "Status"
)

var xuidlValue = regexp.MustCompile(`^[0-9a-f]{32}\.[0-9]+\.[0-9]+$`)

// cutServerFields removes from the end of msg's header the fields named in
// allowed, each at most once, and returns the rest and the fields removed
// (in order) with their values.
func cutServerFields(msg []byte, allowed []string) ([]byte, []string, map[string]string) {
	head, body, ok := bytes.Cut(msg, []byte("\n\n"))
	if !ok {
		return msg, nil, nil
	}
	lines := strings.SplitAfter(string(head)+"\n", "\n")
	lines = lines[:len(lines)-1]
	var names []string
	values := map[string]string{}
	for len(lines) > 1 {
		name, value, _ := strings.Cut(strings.TrimSuffix(lines[len(lines)-1], "\n"), ": ")
		if !contains(allowed, name) || values[name] != "" {
			break
		}
		values[name] = value
		names = append([]string{name}, names...)
		lines = lines[:len(lines)-1]
	}
	return []byte(strings.Join(lines, "") + "\n" + string(body)), names, values
}

// checkMailutils checks that every message delivered to the server arrived
// once, and byte for byte as delivered but for popfetch's Received field
// and, at the end of the header, pop3d's X-UIDL (required) and the other
// fields of allowed. It returns how often each added field was seen.
func (m *muE2E) checkMailutils(allowed ...string) map[string]int {
	m.t.Helper()
	allowed = append(allowed, fieldXUIDL)
	got, dups := m.received()
	if dups != 0 {
		m.t.Errorf("%d messages delivered twice", dups)
	}
	seen := map[string]int{}
	uids := map[string]string{}
	for id, want := range m.sent {
		if !bytes.HasSuffix(want, []byte("\n")) {
			// POP3 ends every message with a line break (RFC 1939).
			want = append(want[:len(want):len(want)], '\n')
		}
		g, ok := got[id]
		if !ok {
			m.t.Errorf("message %s was lost", id)
			continue
		}
		rest, names, values := cutServerFields(g, allowed)
		for _, n := range names {
			seen[n]++
		}
		if !xuidlValue.MatchString(values[fieldXUIDL]) {
			m.t.Errorf("message %s: X-UIDL %q (want one, MD5.UIDVALIDITY.UID)", id, values[fieldXUIDL])
		} else if other, dup := uids[values[fieldXUIDL]]; dup {
			m.t.Errorf("messages %s and %s both have X-UIDL %s", id, other, values[fieldXUIDL])
		}
		uids[values[fieldXUIDL]] = id
		if !bytes.Equal(rest, want) {
			m.t.Errorf("message %s differs beyond popfetch's Received and pop3d's %v:\n%s", id, allowed, lineDiff(rest, want))
		}
	}
	if len(got) != len(m.sent) {
		m.t.Errorf("Maildir holds %d distinct messages, sent %d", len(got), len(m.sent))
	}
	return seen
}

// lineDiff describes the first line where got and want differ.
func lineDiff(got, want []byte) string {
	g, w := strings.SplitAfter(string(got), "\n"), strings.SplitAfter(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("  first difference at line %d (got %d bytes, want %d):\n   got: %q\n  want: %q\n  previous line: %q",
				i+1, len(got), len(want), trunc([]byte(gl)), trunc([]byte(wl)), trunc([]byte(strings.Join(w[max(0, i-1):i], ""))))
		}
	}
	return "  (no line differs)"
}

// wire is a message as RETR sends it, before dot-stuffing: CRLF line ends
// and a final line break.
func wire(msg []byte) []byte {
	if !bytes.HasSuffix(msg, []byte("\n")) {
		msg = append(msg[:len(msg):len(msg)], '\n')
	}
	return bytes.ReplaceAll(msg, []byte("\n"), []byte("\r\n"))
}

var pipeliningModes = []string{"auto", "off"}

// TestMailutilsDeleteMode fetches 20 messages (the awkward ones among
// them) over STLS, POP3S and plain POP3, with and without pipelining, and
// deletes them: all arrive, byte for byte but for the fields pop3d adds;
// the mbox is left empty; a second run finds no mail.
func TestMailutilsDeleteMode(t *testing.T) {
	s := startMailutils(t)
	for _, pipelining := range pipeliningModes {
		for _, mode := range []string{"starttls", "implicit", "none"} {
			t.Run(mode+"/pipelining="+pipelining, func(t *testing.T) {
				m := newMailutilsE2E(t, s, "del-"+mode+"-"+pipelining, mode, pipelining, "")
				m.deliver(12, true)
				if n := m.count(); n != 20 {
					t.Fatalf("the mbox holds %d messages, want 20", n)
				}
				code, out := m.run("-v")
				if code != exitMail {
					t.Fatalf("exit %d\n%s\n%s", code, out, s.LogTail())
				}
				// No session opened the mbox since the messages came: pop3d
				// adds X-UIDL alone.
				seen := m.checkMailutils()
				if seen[fieldXUIDL] != 20 {
					t.Errorf("X-UIDL on %d messages, want 20", seen[fieldXUIDL])
				}
				if n := m.count(); n != 0 {
					t.Errorf("%d messages left on the server", n)
				}
				if fi, err := os.Stat(s.Mailbox(m.name)); err != nil {
					t.Error(err)
				} else if fi.Size() != 0 {
					t.Errorf("the mbox still holds %d octets", fi.Size())
				}
				wantWith := map[string]string{"none": " with POP3 ", "starttls": " with POP3S ", "implicit": " with POP3S "}[mode]
				entries, _ := os.ReadDir(filepath.Join(m.maildir, "new"))
				first, _ := os.ReadFile(filepath.Join(m.maildir, "new", entries[0].Name()))
				if !strings.HasPrefix(string(first), "Received: from 127.0.0.1 (127.0.0.1)\n\tby ") || !strings.Contains(string(first), wantWith) {
					t.Errorf("Received field: %q", first[:min(len(first), 200)])
				}
				if code, out := m.run(); code != exitNoMail {
					t.Errorf("second run: exit %d, want %d\n%s", code, exitNoMail, out)
				}
			})
		}
	}
}

// TestMailutilsKeepMode keeps mail on the server: the first run fetches
// all, the second none, and of 3 messages added then exactly those 3 are
// fetched. pop3d rewrites the mbox after each session, adding X-UID,
// Status and X-IMAPbase to what it stores; the UIDs must stay.
func TestMailutilsKeepMode(t *testing.T) {
	s := startMailutils(t)
	for _, pipelining := range pipeliningModes {
		t.Run("pipelining="+pipelining, func(t *testing.T) {
			m := newMailutilsE2E(t, s, "keep-"+pipelining, "starttls", pipelining, "keep = true")
			m.deliver(12, true)
			if code, out := m.run(); code != exitMail {
				t.Fatalf("exit %d\n%s\n%s", code, out, s.LogTail())
			}
			m.checkMailutils()
			code, out := m.run()
			if code != exitNoMail || !strings.Contains(out, " 0 new, 0 delivered") {
				t.Fatalf("second run: exit %d, want %d and 0 new\n%s", code, exitNoMail, out)
			}
			if n := m.count(); n != 20 {
				t.Errorf("the server holds %d messages, want 20", n)
			}
			added := m.deliver(3, false)
			code, out = m.run()
			if code != exitMail || !strings.Contains(out, " 3 new, 3 delivered") {
				t.Fatalf("third run: exit %d, want %d and 3 new\n%s", code, exitMail, out)
			}
			// The 3 came after the second run's session rewrote the mbox:
			// pop3d adds X-UIDL alone to them too.
			if seen := m.checkMailutils(); seen[fieldXUIDL] != 23 {
				t.Errorf("X-UIDL on %d messages, want 23", seen[fieldXUIDL])
			}
			got, _ := m.received()
			for _, msg := range added {
				if _, ok := got[messageID(msg)]; !ok {
					t.Errorf("new message %s not fetched", messageID(msg))
				}
			}
			if code, out := m.run(); code != exitNoMail {
				t.Errorf("fourth run: exit %d, want %d\n%s", code, exitNoMail, out)
			}
			if n := m.count(); n != 23 {
				t.Errorf("the server holds %d messages, want 23", n)
			}
		})
	}
}

var (
	traceListLine = regexp.MustCompile(`(?m) S: ([0-9]+) ([0-9]+)$`)
	logDelivered  = regexp.MustCompile(`(?m) delivered uid=\S+ number=([0-9]+) .*subject="test ([0-9]+)"$`)
	traceCommand  = regexp.MustCompile(`(?m) C: ([A-Z]+)`)
	logTooLarge   = regexp.MustCompile(`(?m)message larger than size_limit left on the server uid=\S+ number=[0-9]+ size=([0-9]+) size_limit=([0-9]+)$`)
)

// TestMailutilsSizeLimit runs size_limit against the sizes pop3d states,
// which are not those of the messages as delivered: once a session has
// asked for the UIDs, pop3d adds X-UIDL to each message, LIST counts it
// and RETR sends it; at the session's end it stores the messages with
// X-UIDL, X-UID, Status and (first message) X-IMAPbase, and later sessions
// count and send those.
//
// The largest message (1 MiB, with a quoted "From " line: pop3d's sizes of
// such messages drift once it has read them, see package mailutils) is
// fetched with size_limit exactly its size as the server holds it, X-UIDL
// included, with everything else. With size_limit just above its size as
// delivered it stays on the server, exactly it; so it does with a limit
// just above the size that run stated, since the session's end stored it
// with more fields; with a limit of exactly what the next run states it
// is fetched. The figures are logged.
func TestMailutilsSizeLimit(t *testing.T) {
	s := startMailutils(t)
	for _, pipelining := range pipeliningModes {
		t.Run("pipelining="+pipelining, func(t *testing.T) {
			// largest returns the largest message as delivered, its size
			// on the wire, and its size as the server will state it in
			// the first session: with "X-UIDL: " MD5 "." UIDVALIDITY (a
			// time, 10 digits) "." N CRLF added.
			largest := func(msgs [][]byte) (int, int, []byte) {
				i := 0
				for j, msg := range msgs {
					if len(wire(msg)) > len(wire(msgs[i])) {
						i = j
					}
				}
				size := len(wire(msgs[i]))
				return size, size + len("X-UIDL: ") + 32 + 1 + 10 + 1 + len(strconv.Itoa(i+1)) + 2, msgs[i]
			}
			withLimit := func(m *muE2E, base string, limit int) {
				m.writeConfig(strings.Replace(base, "maildir =", fmt.Sprintf("size_limit = %d\nmaildir =", limit), 1))
			}

			// Exactly the largest as the server holds it: all 20.
			m := newMailutilsE2E(t, s, "limit-held-"+pipelining, "none", pipelining, "")
			msgs := m.deliver(12, true)
			size, held, big := largest(msgs)
			withLimit(m, readFile(t, m.config), held)
			code, out := m.run("-vv")
			if code != exitMail {
				t.Fatalf("size_limit %d: exit %d\n%s", held, code, out)
			}
			m.checkMailutils()
			if n := m.count(); n != 0 {
				t.Errorf("size_limit %d: %d messages left on the server\n%s", held, n, out)
			}
			m.logSizes(out, fmt.Sprintf("size_limit %d (the largest as held), all fetched", held))

			// Just above the largest as delivered: it stays.
			m = newMailutilsE2E(t, s, "limit-delivered-"+pipelining, "none", pipelining, "")
			msgs = m.deliver(12, true)
			size, held, big = largest(msgs)
			base := readFile(t, m.config)
			leftOne := func(limit int) int {
				t.Helper()
				withLimit(m, base, limit)
				code, out := m.run("-vv")
				if code != exitMail && code != exitNoMail {
					t.Fatalf("size_limit %d: exit %d\n%s", limit, code, out)
				}
				got, _ := m.received()
				if _, ok := got[messageID(big)]; ok || len(got) != len(msgs)-1 {
					t.Errorf("size_limit %d: %d messages fetched (the largest among them: %v), want the %d others\n%s", limit, len(got), ok, len(msgs)-1, out)
				}
				if n := m.count(); n != 1 {
					t.Errorf("size_limit %d: %d messages left on the server, want 1", limit, n)
				}
				sm := logTooLarge.FindAllStringSubmatch(out, -1)
				if len(sm) != 1 {
					t.Fatalf("size_limit %d: want one message left for size_limit:\n%s", limit, out)
				}
				stated, _ := strconv.Atoi(sm[0][1])
				t.Logf("size_limit %d: the largest (%d octets as delivered) left on the server: LIST stated %d", limit, size, stated)
				return stated
			}
			if first := leftOne(size + 1); first != held {
				t.Errorf("the first session's LIST stated %d for the largest message, want %d (as delivered, %d, and X-UIDL)", first, held, size)
			}
			second := leftOne(held + 1)
			withLimit(m, base, second)
			code, out = m.run("-vv")
			if code != exitMail {
				t.Fatalf("size_limit %d: exit %d\n%s", second, code, out)
			}
			// pop3d stored the largest with its fields by now, and sends
			// them.
			m.checkMailutils(fieldXUID, fieldStatus, fieldXIMAPbase)
			if n := m.count(); n != 0 {
				t.Errorf("%d messages left on the server", n)
			}
			m.logSizes(out, fmt.Sprintf("size_limit %d, the largest after two sessions", second))
		})
	}
}

// logSizes logs, from a -vv run, the size each fetched message had as
// delivered, what LIST said of it, and the octets RETR sent (what arrived
// with CRLF line ends), and checks that RETR never sent less than LIST.
func (m *muE2E) logSizes(trace, title string) {
	m.t.Helper()
	list := map[string]int{}
	for _, sm := range traceListLine.FindAllStringSubmatch(trace, -1) {
		list[sm[1]], _ = strconv.Atoi(sm[2])
	}
	got, _ := m.received()
	var b strings.Builder
	var cmds []string
	for _, sm := range traceCommand.FindAllStringSubmatch(trace, -1) {
		if sm[1] == "RETR" {
			break
		}
		cmds = append(cmds, sm[1])
	}
	fmt.Fprintf(&b, "%s; popfetch sent %s before the first RETR; sizes in octets:\n", title, strings.Join(cmds, " "))
	for _, sm := range logDelivered.FindAllStringSubmatch(trace, -1) {
		id := fmt.Sprintf("<%s.%s@popfetch.test>", sm[2], m.name)
		delivered, arrived := len(wire(m.sent[id])), got[id]
		retr := len(arrived) + bytes.Count(arrived, []byte("\n")) // CRLF on the wire
		l, ok := list[sm[1]]
		if !ok {
			m.t.Errorf("no LIST line for message %s in the trace", sm[1])
			continue
		}
		if retr < l {
			m.t.Errorf("message %s: RETR sent %d octets, LIST stated %d", id, retr, l)
		}
		if delivered > 100_000 || retr != l {
			fmt.Fprintf(&b, "  message %-3s delivered %8d  LIST %8d  RETR %8d  RETR-LIST %+d\n", sm[1], delivered, l, retr, retr-l)
		}
	}
	m.t.Log(b.String())
}

// TestMailutilsSTARTTLSNotOffered: tls = "starttls" against the listener
// whose CAPA lacks STLS fails, and no password crosses the wire.
func TestMailutilsSTARTTLSNotOffered(t *testing.T) {
	s := startMailutils(t)
	m := newMailutilsE2E(t, s, "nostls", "starttls", "auto", "")
	m.writeConfig(strings.Replace(readFile(t, m.config), fmt.Sprintf("port = %d", s.PlainPort), fmt.Sprintf("port = %d", s.NoTLSPort), 1))
	m.deliver(1, false)
	logBefore := len(s.Log())
	code, out := m.run("-vv")
	if code != exitProtocol || !strings.Contains(out, "STLS") {
		t.Fatalf("exit %d, want %d and STLS named\n%s", code, exitProtocol, out)
	}
	if strings.Contains(out, "C: PASS") || strings.Contains(out, "C: USER") || strings.Contains(s.Log()[logBefore:], "logged in") {
		t.Errorf("logged in without TLS:\n%s\n%s", out, s.LogTail())
	}
	if n := m.count(); n != 1 {
		t.Errorf("the server holds %d messages, want 1", n)
	}
}
