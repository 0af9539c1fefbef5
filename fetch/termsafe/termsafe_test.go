package termsafe

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text, ümlauts, 日本", "plain text, ümlauts, 日本"},
		{"\x1b[2J\x1b[Hcleared", `\x1b[2J\x1b[Hcleared`},
		{"\x1b]0;title\x07", `\x1b]0;title\x07`},
		{"ok\roverwritten", `ok\x0doverwritten`},
		{"two\nlines\ttab", `two\x0alines\x09tab`},
		{"csi \u009b31m red", `csi \u009b31m red`},
		{"raw C1 byte \x9b31m", `raw C1 byte \x9b31m`},
		{"bidi \u202egnp.exe", `bidi \u202egnp.exe`},
		{"isolates \u2066x\u2069 marks \u200e\u200f\u061c", `isolates \u2066x\u2069 marks \u200e\u200f\u061c`},
		{"del\x7f nul\x00", `del\x7f nul\x00`},
		{"cut \xe2\x82", `cut \xe2\x82`},
		{`back\slash`, `back\slash`},
	} {
		if got := String(tc.in); got != tc.want {
			t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := Lines("a\x1b\nb\r\n"); got != "a\\x1b\nb\\x0d\n" {
		t.Errorf("Lines = %q", got)
	}
	if got := Short("\x1b"+strings.Repeat("x", 10), 6); got != `\x1bxx...` {
		t.Errorf("Short = %q", got)
	}
	var b bytes.Buffer
	Writer(&b).Write([]byte("S: +OK \x1b]52;c;AAAA\x07\r\n"))
	if b.String() != "S: +OK \\x1b]52;c;AAAA\\x07\\x0d\n" {
		t.Errorf("Writer wrote %q", b.String())
	}
}

// safe reports whether s holds nothing a terminal acts on.
func safe(s string, keepLF bool) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == '\n' && keepLF {
			continue
		}
		if bad(r, 2) {
			return false
		}
	}
	return true
}

func FuzzString(f *testing.F) {
	for _, s := range []string{"", "\x1b[31m", "\u009b", "\xc2\x9b", "\u202e", "a\r\nb", "\xff\xfe", "日本\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		if !safe(out, false) {
			t.Fatalf("String(%q) = %q still holds a control", s, out)
		}
		if lines := Lines(s); !safe(lines, true) || strings.Count(lines, "\n") != strings.Count(s, "\n") {
			t.Fatalf("Lines(%q) = %q", s, lines)
		}
		if clean(s, false) != (out == s) {
			t.Fatalf("String(%q) changed a clean string, or kept a dirty one: %q", s, out)
		}
	})
}

// TestJSON: what a hostile server put in a string reaches a terminal
// escaped, and the JSON still decodes to the same value.
func TestJSON(t *testing.T) {
	for _, s := range []string{"plain", "\x1b[2J\a\r", "\u009b31m", "a\u202etxt", "del\x7f", "ünïcödé ✓", "\u2066x\u2069"} {
		enc, err := json.Marshal(map[string]string{"greeting": s})
		if err != nil {
			t.Fatal(err)
		}
		safe := JSON(enc)
		if !clean(string(safe), false) {
			t.Errorf("%q: %q still holds a control", s, safe)
		}
		var back map[string]string
		if err := json.Unmarshal(safe, &back); err != nil || back["greeting"] != s {
			t.Errorf("%q: decodes to %q, %v", s, back["greeting"], err)
		}
	}
}
