package fetch

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestHeaderFields(t *testing.T) {
	head := "From: a@example.com\r\nSubject: first\r\n line two\r\n\tline three\r\nsubject: second\r\nX-Bad: \x1b[2J\r\nno colon here\r\n\r\nBody: not a header\r\n"
	h := headerFields(strings.NewReader(head))
	if h["from"] != "a@example.com" || h["subject"] != "first line two line three" || h["x-bad"] != "\x1b[2J" || h["body"] != "" {
		t.Errorf("headerFields = %q", h)
	}
	if got := decodeHeader("=?utf-8?q?caf=C3=A9?= \x1b]0;x " + strings.Repeat("é", 300)); strings.ContainsRune(got, 0x1b) || utf8.RuneCountInString(got) != 200 {
		t.Errorf("decodeHeader = %q", got)
	}
}

func FuzzHeaderFields(f *testing.F) {
	f.Add("Subject: =?utf-8?b?w6TDtsO8?=\r\nFrom: x\r\n\r\nbody")
	f.Add(" folded first\nSubject:\n\t\n")
	f.Add(strings.Repeat("a", 70000) + ": x\n")
	f.Fuzz(func(t *testing.T, head string) {
		h := headerFields(strings.NewReader(head))
		for _, v := range h {
			d := decodeHeader(v)
			if utf8.RuneCountInString(d) > 200 || strings.ContainsFunc(d, func(r rune) bool { return r < ' ' }) {
				t.Fatalf("decodeHeader(%q) = %q", v, d)
			}
		}
	})
}
