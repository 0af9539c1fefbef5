// Package roff writes manual pages in the man(7) macro language: text
// escaped so that no input can become a request, and the subset of
// Markdown the project's reference documents use turned into man macros.
package roff

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Text escapes s for a text line in fill mode: backslashes are printed
// as such, characters outside printable ASCII become named Unicode
// escapes (control characters are dropped), and a line that would
// start with a control character (a dot or an apostrophe) is protected with \&.
// Hyphens are left alone: in prose they are hyphens.
func Text(s string) string {
	return escape(s, false, true)
}

// Literal escapes s as Text does, and writes every '-' as \- (a minus
// sign, as options and code must be typed).
func Literal(s string) string {
	return escape(s, true, true)
}

// Piece escapes s as Text does (as Literal if literal is true), for a
// piece of a line: only the lines after a newline in s are protected;
// the caller protects the line it makes with Protect.
func Piece(s string, literal bool) string {
	return escape(s, literal, false)
}

// escape escapes s; lineStart says whether s starts a line (else only
// the lines after a newline in s are protected).
func escape(s string, literal, lineStart bool) string {
	var b strings.Builder
	atLineStart := lineStart
	for _, r := range s {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			// Control characters and broken UTF-8 print nothing, and
			// leave a line's start where it was: "\x01.so" is ".so".
			continue
		}
		if atLineStart && (r == '.' || r == '\'') {
			b.WriteString(`\&`)
		}
		atLineStart = false
		switch {
		case r == '\n':
			b.WriteByte('\n')
			atLineStart = true
		case r == '\\':
			b.WriteString(`\e`)
		case r == '-' && literal:
			b.WriteString(`\-`)
		case r == '\t':
			b.WriteByte(' ')
		case r >= 0x80:
			fmt.Fprintf(&b, `\[u%04X]`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Arg quotes s as one argument of a macro (.TH, .SH, .SS): escaped as
// Text, on one line, in double quotes, with a double quote as \(dq.
func Arg(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return `"` + strings.ReplaceAll(escape(s, false, true), `"`, `\(dq`) + `"`
}

// Bold returns s, escaped as Literal, in bold, never hyphenated.
func Bold(s string) string { return `\fB\%` + Literal(s) + `\fR` }

// Italic returns s, escaped as Literal, in italics, never hyphenated.
func Italic(s string) string { return `\fI\%` + Literal(s) + `\fR` }
