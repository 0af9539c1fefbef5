// Package termsafe makes text that came from outside (a server's replies,
// a certificate's names, a message's header fields) safe to show a person:
// whatever a terminal or a log viewer would act on instead of showing is
// replaced by a visible escape. It is the one sanitiser every place that
// shows such text uses: log lines of every format, the protocol trace,
// errors, popfetch status, popfetch list and the progress line.
package termsafe

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// String returns s with every character a terminal would act on written
// as a Go-style escape: C0 controls (ESC, BEL, CR, LF, TAB and the rest)
// as \xNN, DEL as \x7f, C1 controls (U+0080 to U+009F, among them U+009B,
// a one-character CSI) as \u0080..\u009f, the bidirectional controls that
// reorder what follows them (U+061C, U+200E, U+200F, U+202A to U+202E,
// U+2066 to U+2069) as \uNNNN, and each byte that is not UTF-8 as \xNN.
// A backslash stays a backslash: the result is for people, not to be
// parsed back.
func String(s string) string {
	if clean(s, false) {
		return s
	}
	return escape(s, false)
}

// Lines is String, but keeps line feeds: for text that is shown as lines
// (a trace, a block of log lines).
func Lines(s string) string {
	if clean(s, true) {
		return s
	}
	return escape(s, true)
}

// Short is String cut to at most n characters (runes of the escaped
// text), with "..." added where it was cut.
func Short(s string, n int) string {
	s = String(s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "..."
}

// clean reports whether s needs no escaping.
func clean(s string, keepLF bool) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' || b >= 0x7f {
			if b == '\n' && keepLF {
				continue
			}
			if b < 0x80 {
				return false
			}
			r, size := utf8.DecodeRuneInString(s[i:])
			if bad(r, size) {
				return false
			}
			i += size - 1
		}
	}
	return true
}

// bad reports whether a decoded rune must be escaped.
func bad(r rune, size int) bool {
	switch {
	case r == utf8.RuneError && size <= 1:
		return true // not UTF-8
	case r < ' ', r >= 0x7f && r < 0xa0:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

func escape(s string, keepLF bool) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\n' && keepLF:
			b.WriteByte('\n')
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x80 && bad(r, size):
			fmt.Fprintf(&b, `\x%02x`, r)
		case bad(r, size):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// Writer returns a writer that passes what is written to w through Lines.
// Each Write should hold whole lines, as a trace's do: a character cut in
// two by a Write is escaped byte by byte.
func Writer(w io.Writer) io.Writer {
	return &writer{w: w}
}

type writer struct{ w io.Writer }

func (w *writer) Write(p []byte) (int, error) {
	if _, err := io.WriteString(w.w, Lines(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// JSON takes encoded JSON and writes each character String would escape
// and encoding/json leaves as it is (DEL, the C1 controls, the
// bidirectional controls) as a \uNNNN escape: the JSON means the same,
// and shown on a terminal it does nothing but show. encoding/json already
// escapes the C0 controls and replaces bytes that are not UTF-8.
func JSON(b []byte) []byte {
	if clean(string(b), true) {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r != '\n' && r != '\t' && r != '\r' && bad(r, size) {
			if r == utf8.RuneError && size <= 1 {
				r = rune(b[i]) // not UTF-8: cannot happen after encoding/json
			}
			out = fmt.Appendf(out, `\u%04x`, r)
		} else {
			out = append(out, b[i:i+size]...)
		}
		i += size
	}
	return out
}
