package deliver

import (
	"bufio"
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/termsafe"
)

// FuzzEnvelopeSender: whatever a sender writes in Return-Path or From,
// the address popfetch takes from it lands in an MDA's arguments and an
// mbox's From line only neutralised: no white space, no shell syntax, no
// leading "-".
func FuzzEnvelopeSender(f *testing.F) {
	for _, s := range []string{
		"Return-Path: <a@b.c>\n\nx", "From: A <a@b.c>\n\n", "Return-Path: <\"a -oQ/tmp/evil\"@x.example>\n\n",
		"Return-Path: <>\n\n", "From: =?utf-8?q?x?= <$(id)@x>\n\n", "Return-Path: -f@x\n\n", "From: a\r\n b@c\n\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		sender := envelopeSender(strings.NewReader(msg))
		safe := safeValue(sender)
		if strings.HasPrefix(safe, "-") || strings.ContainsAny(safe, " \t\r\n\"'`$;|&<>()\\\\*?/") {
			t.Fatalf("envelopeSender(%q) = %q, made safe as %q", msg, sender, safe)
		}
		if from := fromLineAddr(sender); strings.ContainsAny(from, " \t\r\n") {
			t.Fatalf("fromLineAddr(%q) = %q", sender, from)
		}
		for _, arg := range Expand([]string{"-f", "%F", "x%Fy"}, sender, "me") {
			if strings.ContainsAny(arg, "\n\r") {
				t.Fatalf("Expand put a line break in %q", arg)
			}
		}
	})
}

// FuzzMboxrd: any message written through the mboxrd quoting reads back
// byte for byte once one '>' is taken off each quoted From line, and no
// line of the output starts a new message.
func FuzzMboxrd(f *testing.F) {
	for _, s := range []string{"From x\n", ">From x\n", "a\nFrom b\n>>From c", "From", "\n\nFrom \n", "From \r\n"} {
		f.Add(s)
	}
	unquote := regexp.MustCompile(`(?m)^>(>*From )`)
	f.Fuzz(func(t *testing.T, msg string) {
		var b strings.Builder
		w := bufio.NewWriter(&b)
		q := &mboxrdWriter{w: w, bol: true}
		q.Write([]byte(msg))
		q.flushPending()
		w.Flush()
		out := b.String()
		if strings.HasPrefix(out, "From ") || strings.Contains(out, "\nFrom ") {
			t.Fatalf("%q quoted as %q: a line starts a message", msg, out)
		}
		if back := unquote.ReplaceAllString(out, "$1"); back != msg {
			t.Fatalf("%q quoted as %q reads back as %q", msg, out, back)
		}
	})
}

// FuzzIMAPTrace: whatever the two sides of an IMAP session send, cut
// wherever, the trace is lines of "C: " or "S: " and text a terminal only
// shows, each bounded, and the secret of a login that came first never
// appears (unless the fuzzed octets hold it themselves).
func FuzzIMAPTrace(f *testing.F) {
	f.Add([]byte("A2 APPEND INBOX {5+}\r\nhello\r\n"), []byte("* OK \x1b[2J\r\nA1 OK\r\n"), uint16(7))
	f.Add([]byte("A2 LOGIN {3}\r\n"), []byte("* 1 FETCH (BODY[] {4}\r\nab\r\n)\r\n"), uint16(0))
	f.Add([]byte("\r\n*\r\n"), []byte("+ \r\n"), uint16(1))
	const secret = "Zq7-secret-Zq7"
	f.Fuzz(func(t *testing.T, client, server []byte, cut uint16) {
		var out bytes.Buffer
		tr := newIMAPTrace(&out)
		tr.client([]byte("A0 LOGIN {2+}\r\nme {14+}\r\n" + secret + "\r\nA1 AUTHENTICATE PLAIN\r\n"))
		tr.server([]byte("+ \r\n"))
		tr.client([]byte(secret + "\r\n"))
		k := int(cut) % (len(client) + 1)
		tr.client(client[:k])
		tr.server(server)
		tr.client(client[k:])
		tr.close()
		got := out.String()
		if strings.Contains(got, secret) && !bytes.Contains(client, []byte(secret)) && !bytes.Contains(server, []byte(secret)) {
			t.Fatalf("the trace shows the secret:\n%s", got)
		}
		for _, line := range strings.SplitAfter(got, "\n") {
			if line == "" {
				continue
			}
			if !strings.HasPrefix(line, "C: ") && !strings.HasPrefix(line, "S: ") || !strings.HasSuffix(line, "\n") {
				t.Fatalf("a trace line %q", line)
			}
			if len(line) > 4*maxTraceLine+100 {
				t.Fatalf("a trace line of %d octets", len(line))
			}
			if termsafe.String(line[:len(line)-1]) != line[:len(line)-1] {
				t.Fatalf("a trace line a terminal would act on: %q", line)
			}
		}
	})
}
