package roff

import (
	"fmt"
	"strings"
)

// Markdown turns the Markdown subset of the project's reference
// documents into man macros, to go inside a section (.SH) of a page:
//
//   - "# Title" is dropped (the page's section names it); "## Title" and
//     deeper headings become .SS subsections;
//   - paragraphs become .PP paragraphs, "- item" lists .IP bullets;
//   - fenced code blocks are set unfilled, indented;
//   - tables become tagged paragraphs (.TP): the first column is the tag,
//     the middle columns follow it in parentheses as "header: value",
//     and the last column is the paragraph;
//   - inline, `code` and **strong** are bold and [text](link) is text.
//
// Anything else passes through as text, escaped: no input can become a
// roff request.
func Markdown(md string) string {
	var out strings.Builder
	lines := strings.Split(strings.ReplaceAll(md, "\r\n", "\n"), "\n")
	var para []string // the lines of the paragraph or list item being read
	bullet := false
	flush := func() {
		if len(para) == 0 {
			return
		}
		if bullet {
			out.WriteString(".IP \\(bu 2\n")
		} else {
			out.WriteString(".PP\n")
		}
		out.WriteString(Inline(strings.Join(para, "\n")))
		out.WriteString("\n")
		para, bullet = nil, false
	}
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			flush()
		case strings.HasPrefix(trimmed, "```"):
			flush()
			out.WriteString(".PP\n.RS 4\n.nf\n")
			for i++; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "```"); i++ {
				if lines[i] == "" {
					out.WriteString("\\&\n") // an empty line in .nf is a blank line; keep it explicit
					continue
				}
				out.WriteString(Literal(lines[i]))
				out.WriteString("\n")
			}
			out.WriteString(".fi\n.RE\n")
		case strings.HasPrefix(trimmed, "#"):
			flush()
			level := len(trimmed) - len(strings.TrimLeft(trimmed, "#"))
			title := strings.TrimSpace(trimmed[level:])
			if level >= 2 && title != "" {
				out.WriteString(".SS " + Arg(plain(title)) + "\n")
			}
		case strings.HasPrefix(trimmed, "|"):
			flush()
			var rows [][]string
			for ; i < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i]), "|"); i++ {
				rows = append(rows, cells(strings.TrimSpace(lines[i])))
			}
			i--
			table(&out, rows)
		case strings.HasPrefix(trimmed, "- ") || strings.HasPrefix(trimmed, "* "):
			flush()
			bullet = true
			para = append(para, strings.TrimSpace(trimmed[2:]))
		default:
			para = append(para, trimmed)
		}
	}
	flush()
	return out.String()
}

// table writes a Markdown table's rows (the header first, then the
// separator) as tagged paragraphs.
func table(out *strings.Builder, rows [][]string) {
	if len(rows) < 2 {
		for _, r := range rows {
			out.WriteString(".PP\n" + Inline(strings.Join(r, " ")) + "\n")
		}
		return
	}
	header := rows[0]
	for _, r := range rows[2:] {
		if len(r) == 0 {
			continue
		}
		out.WriteString(".TP\n")
		tag := Inline(r[0])
		var extra []string
		for j := 1; j < len(r)-1; j++ {
			if r[j] == "" {
				continue
			}
			name := ""
			if j < len(header) && !strings.HasPrefix(r[j], "(") {
				name = header[j] + ": "
			}
			extra = append(extra, Inline(name+r[j]))
		}
		if len(extra) == 1 && strings.HasPrefix(r[len(r)-2], "(") {
			tag += " " + extra[0]
		} else if len(extra) > 0 {
			tag += " (" + strings.Join(extra, "; ") + ")"
		}
		out.WriteString(Protect(tag) + "\n")
		if len(r) > 1 {
			out.WriteString(Protect(Inline(r[len(r)-1])) + "\n")
		}
	}
}

// cells splits a table row into its cells: at each '|' outside a code
// span and not escaped as "\|".
func cells(row string) []string {
	row = strings.TrimPrefix(strings.TrimSuffix(row, "|"), "|")
	var out []string
	var cell strings.Builder
	code := false
	for i := 0; i < len(row); i++ {
		c := row[i]
		switch {
		case c == '\\' && i+1 < len(row) && row[i+1] == '|':
			cell.WriteByte('|')
			i++
		case c == '`':
			code = !code
			cell.WriteByte(c)
		case c == '|' && !code:
			out = append(out, strings.TrimSpace(cell.String()))
			cell.Reset()
		default:
			cell.WriteByte(c)
		}
	}
	return append(out, strings.TrimSpace(cell.String()))
}

// Inline converts Markdown's inline markup in s to roff fonts, escaping
// the rest: `code` and **strong** are bold, [text](link) is its text.
func Inline(s string) string {
	var b strings.Builder
	bold := false
	// Fragments go mid-line: Protect() below guards the line starts.
	text := func(t string) { b.WriteString(escape(t, false, false)) }
	for len(s) > 0 {
		switch {
		case s[0] == '`':
			end := strings.IndexByte(s[1:], '`')
			if end < 0 {
				text(s)
				s = ""
				continue
			}
			code := strings.ReplaceAll(s[1:1+end], "\n", " ")
			b.WriteString(`\fB\%` + escape(code, true, false) + font(bold))
			s = s[end+2:]
		case strings.HasPrefix(s, "**"):
			bold = !bold
			b.WriteString(font(bold))
			s = s[2:]
		case s[0] == '[':
			close := strings.Index(s, "](")
			end := -1
			if close > 0 {
				end = strings.IndexByte(s[close:], ')')
			}
			if close < 0 || end < 0 || strings.Contains(s[:close], "\n") {
				text("[")
				s = s[1:]
				continue
			}
			b.WriteString(Inline(s[1:close]))
			s = s[close+end+1:]
		default:
			n := strings.IndexAny(s, "`*[")
			if n < 0 {
				n = len(s)
			}
			if n == 0 { // a lone '*'
				n = 1
			}
			text(s[:n])
			s = s[n:]
		}
	}
	if bold {
		b.WriteString(`\fR`)
	}
	return Protect(b.String())
}

// font is the font escape for bold on or off.
func font(bold bool) string {
	if bold {
		return `\fB`
	}
	return `\fR`
}

// Protect puts \& before every line of s that would start with a
// control character (a dot or an apostrophe).
func Protect(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

// plain is s without its inline markup, for a macro argument.
func plain(s string) string {
	r := strings.NewReplacer("`", "", "**", "")
	s = r.Replace(s)
	var b strings.Builder
	for len(s) > 0 {
		open := strings.IndexByte(s, '[')
		close := strings.Index(s, "](")
		if open < 0 || close < open {
			b.WriteString(s)
			break
		}
		end := strings.IndexByte(s[close:], ')')
		if end < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:open] + s[open+1:close])
		s = s[close+end+1:]
	}
	return b.String()
}

// Example returns a paragraph for a man page's EXAMPLES section: the
// explanation, then the commands, set unfilled and indented.
func Example(explain string, commands ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".PP\n%s\n.PP\n.RS 4\n.nf\n", Protect(Text(explain)))
	for _, c := range commands {
		if c == "" {
			b.WriteString("\\&\n") // a blank line, said so
			continue
		}
		b.WriteString(Protect(Literal(c)) + "\n")
	}
	b.WriteString(".fi\n.RE\n")
	return b.String()
}
