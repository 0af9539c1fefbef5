package roff

import (
	"strings"
	"testing"
)

func TestEscape(t *testing.T) {
	tests := []struct {
		name, in, text, literal string
	}{
		{"plain", "fetch mail", "fetch mail", "fetch mail"},
		{"hyphen", "one-shot --keep", "one-shot --keep", `one\-shot \-\-keep`},
		{"backslash", `a\fBb\\`, `a\efBb\e\e`, `a\efBb\e\e`},
		{"dot at start", ".so /etc/passwd", `\&.so /etc/passwd`, `\&.so /etc/passwd`},
		{"apostrophe at start", "'bp", `\&'bp`, `\&'bp`},
		{"dot after newline", "a\n.ig", "a\n\\&.ig", "a\n\\&.ig"},
		{"dot behind a dropped control", "\x01.so x\n\u0085'bp", "\\&.so x\n\\&'bp", "\\&.so x\n\\&'bp"},
		{"dot inside", "a.b 'c'", "a.b 'c'", "a.b 'c'"},
		{"control characters", "a\x1b[31mb\x00c\x7fd\u0085e", "a[31mbcde", "a[31mbcde"},
		{"tab", "a\tb", "a b", "a b"},
		{"non-ASCII", "caf\u00e9 \u2014", `caf\[u00E9] \[u2014]`, `caf\[u00E9] \[u2014]`},
		{"broken UTF-8", "a\xffb", "ab", "ab"},
	}
	for _, tt := range tests {
		if got := Text(tt.in); got != tt.text {
			t.Errorf("%s: Text(%q) = %q, want %q", tt.name, tt.in, got, tt.text)
		}
		if got := Literal(tt.in); got != tt.literal {
			t.Errorf("%s: Literal(%q) = %q, want %q", tt.name, tt.in, got, tt.literal)
		}
	}
	if got, want := Arg(`say "hi"`+"\n.x"), `"say \(dqhi\(dq .x"`; got != want {
		t.Errorf("Arg = %s, want %s", got, want)
	}
	if got, want := Bold("--config"), `\fB\%\-\-config\fR`; got != want {
		t.Errorf("Bold = %s, want %s", got, want)
	}
}

func TestMarkdown(t *testing.T) {
	md := "# Title\n\nSome `code-x` and **strong** and [a link](other.md#x).\n" +
		".dot at a line's start\n\n## Part `two`\n\n- item one\n  goes on\n- item two\n\n" +
		"```toml\n.so x\n\nkey = \"a-b\"\n```\n\n" +
		"| key | default | meaning |\n|---|---|---|\n| `name` | (required) | The name. |\n" +
		"| `tls` | `\"implicit\"` | One of `a|b` \\| c. |\n| `ca` | | Roots. |\n"
	got := Markdown(md)
	want := `.PP
Some \fB\%code\-x\fR and \fBstrong\fR and a link.
\&.dot at a line's start
.SS "Part two"
.IP \(bu 2
item one
goes on
.IP \(bu 2
item two
.PP
.RS 4
.nf
\&.so x
\&
key = "a\-b"
.fi
.RE
.TP
\fB\%name\fR (required)
The name.
.TP
\fB\%tls\fR (default: \fB\%"implicit"\fR)
One of \fB\%a|b\fR | c.
.TP
\fB\%ca\fR
Roots.
`
	if got != want {
		t.Errorf("Markdown:\n%s\nwant:\n%s", got, want)
	}
}

// TestMarkdownHostile: broken markup comes out as text, and no line of
// the output is a request the converter did not write.
func TestMarkdownHostile(t *testing.T) {
	for _, md := range []string{
		"`unterminated\n.so x",
		"[no link\n.bp",
		"**bold never closed\n'x",
		"| `a | b\n|---|\n| .x | 'y |",
		"```\nnever closed\n.so /etc/passwd",
		"#\n##\n## .TH",
		"\\fB\\*(Lq\\n[x]\\$1",
		"```\n\x01.so /etc/passwd\n\u0085'bp\n```",
		"\x1b.so x",
	} {
		out := Markdown(md)
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "'") {
				t.Errorf("%q: line %q starts with an apostrophe", md, line)
			}
			if strings.HasPrefix(line, ".") {
				m, _, _ := strings.Cut(line, " ")
				switch m {
				case ".PP", ".SS", ".IP", ".TP", ".RS", ".RE", ".nf", ".fi":
				default:
					t.Errorf("%q: line %q is a request", md, line)
				}
			}
		}
		if strings.Contains(out, `\f`) && strings.Count(out, `\fB`) > strings.Count(out, `\fR`) {
			t.Errorf("%q: a bold font is left open:\n%s", md, out)
		}
	}
}
