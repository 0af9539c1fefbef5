package deliver

import (
	"bufio"
	"regexp"
	"strings"
	"testing"
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
