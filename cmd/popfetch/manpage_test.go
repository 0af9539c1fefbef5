package main

import (
	"bytes"
	"context"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// manSections splits a page into its sections (.SH), by name.
func manSections(page string) map[string]string {
	out := map[string]string{}
	name := ""
	for _, line := range strings.Split(page, "\n") {
		if rest, ok := strings.CutPrefix(line, ".SH "); ok {
			name = strings.Trim(rest, `"`)
			continue
		}
		out[name] += line + "\n"
	}
	return out
}

// tags are the lines that follow .TP in text: the terms of its tagged
// paragraphs.
func tags(text string) []string {
	var out []string
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if l == ".TP" && i+1 < len(lines) {
			out = append(out, lines[i+1])
		}
	}
	return out
}

// bold is how the page writes a literal word in bold.
func bold(s string) string { return `\fB\%` + strings.ReplaceAll(s, "-", `\-`) + `\fR` }

// TestManPage reads the manual page the built binary prints: it has the
// sections fetchmail's has, every command with its own options, every
// option once, every configuration key the binary knows, every exit code
// and every environment variable the code reads.
func TestManPage(t *testing.T) {
	page := runBinary(t, "man")
	sec := manSections(page)
	for _, s := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "CONFIGURATION",
		"SIGNALS", "FILES", "ENVIRONMENT", "EXIT STATUS", "EXAMPLES", "SEE ALSO"} {
		if strings.TrimSpace(sec[s]) == "" {
			t.Errorf("the manual page has no %s section", s)
		}
	}

	// Commands and options, from the command-line definition.
	app := newApp(io.Discard, io.Discard, &proc{notify: notifySignals})
	allTags := tags(page)
	countTag := func(flag string) int {
		n := 0
		for _, tag := range allTags {
			if strings.Contains(tag, bold(flag)+",") || strings.HasPrefix(tag, bold(flag)) ||
				strings.Contains(tag, ", "+bold(flag)) {
				n++
			}
		}
		return n
	}
	global := map[string]bool{}
	for _, f := range app.Flags {
		global[f.Names()[0]] = true
		if n := countTag("--" + f.Names()[0]); n != 1 {
			t.Errorf("the global option --%s is described %d times, want once", f.Names()[0], n)
		}
	}
	for _, c := range app.Commands {
		has := strings.Contains(sec["COMMANDS"], "\n.SS "+strconv.Quote(c.Name)+"\n")
		if c.Hidden {
			if has {
				t.Errorf("the page describes the hidden command %s", c.Name)
			}
			continue
		}
		if !has {
			t.Errorf("the page lacks the command %s", c.Name)
		}
		if !strings.Contains(sec["SYNOPSIS"], bold(c.Name)) {
			t.Errorf("the synopsis lacks the command %s", c.Name)
		}
		for _, f := range c.Flags {
			name := f.Names()[0]
			if global[name] || name == "help" {
				continue
			}
			if countTag("--"+name) < 1 {
				t.Errorf("the page lacks %s --%s", c.Name, name)
			}
		}
	}

	// Configuration keys: every key config check prints (set or not)
	// and every key docs/config.md documents is a term of CONFIGURATION.
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte("[[account]]\nname = \"a\"\nserver = \"s\"\nuser = \"u\"\nmaildir = \""+dir+"/m\"\n"+
		"[account.oauth2]\nprovider = \"google\"\nclient_id = \"x\"\n"), 0o600)
	dump := runBinary(t, "--config", cfg, "config", "check")
	keys := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^(?:# )?([a-z0-9_]+)(?: = |: not set)`).FindAllStringSubmatch(dump, -1) {
		keys[m[1]] = true
	}
	ref, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_]+)` \\|").FindAllStringSubmatch(string(ref), -1) {
		keys[m[1]] = true
	}
	if len(keys) < 40 {
		t.Fatalf("only %d configuration keys found in config check's output and docs/config.md", len(keys))
	}
	confTags := strings.Join(tags(sec["CONFIGURATION"]), "\n")
	for k := range keys {
		if !strings.Contains(confTags, bold(k)) {
			t.Errorf("CONFIGURATION lacks the key %s", k)
		}
	}

	// Exit codes: every exitXxx constant of exit.go.
	for name, code := range exitConstants(t) {
		if !strings.Contains(sec["EXIT STATUS"], ".TP\n.B "+strconv.Itoa(code)+"\n") {
			t.Errorf("EXIT STATUS lacks %d (%s)", code, name)
		}
	}

	// Environment: every variable the code reads.
	for _, v := range envVarsRead(t) {
		if v == "POPFETCH_CPUPROFILE" || v == "POPFETCH_MEMPROFILE" {
			continue // only in a build with -tags pprof, for development
		}
		if !strings.Contains(strings.Join(tags(sec["ENVIRONMENT"]), "\n"), bold(v)) {
			t.Errorf("ENVIRONMENT lacks %s, which the code reads", v)
		}
	}
}

// exitConstants are the exit codes exit.go declares, by name.
func exitConstants(t *testing.T) map[string]int {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "exit.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || !strings.HasPrefix(n.Name, "exit") {
					continue
				}
				v, _ := constant.Int64Val(constant.MakeFromLiteral(lit.Value, lit.Kind, 0))
				out[n.Name] = int(v)
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d exit codes in exit.go", len(out))
	}
	return out
}

// TestExitCodeDocs: the table --help and the manual page are written
// from holds every exit code exit.go declares, once.
func TestExitCodeDocs(t *testing.T) {
	seen := map[int]int{}
	for _, e := range exitCodeTable() {
		seen[e.code]++
		if strings.TrimSpace(e.meaning) == "" {
			t.Errorf("exit code %d has no meaning", e.code)
		}
	}
	for name, code := range exitConstants(t) {
		if seen[code] != 1 {
			t.Errorf("%s (%d) is in the exit code table %d times, want once", name, code, seen[code])
		}
	}
}

// envVarsRead are the environment variables the program's code reads
// (os.Getenv, os.LookupEnv, a flag's EnvVars), found in its source.
func envVarsRead(t *testing.T) []string {
	t.Helper()
	re := regexp.MustCompile(`(?:Getenv|LookupEnv)\("([A-Z_]+)"\)|EnvVars: +\[\]string\{"([A-Z_]+)"`)
	var out []string
	seen := map[string]bool{}
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == ".git" || d.Name() == "demo") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		// Tools for tests and benchmarks are not popfetch.
		for _, skip := range []string{"cmd/pop", "internal/dovecot", "internal/mailutils", "internal/measure",
			"internal/testhost", "internal/delayline", "pop3test", "oauth2test"} {
			if strings.Contains(filepath.ToSlash(path), skip) && !strings.Contains(filepath.ToSlash(path), "cmd/popfetch/") {
				return nil
			}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			v := m[1] + m[2]
			if !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"POPFETCH_CONFIG", "NETRC", "JOURNAL_STREAM"} {
		if !seen[v] {
			t.Fatalf("the source scan did not find %s: %v", v, out)
		}
	}
	return out
}

// TestManPageLint: groff (and mandoc, where installed) read the page
// without a warning, and man(1) renders it.
func TestManPageLint(t *testing.T) {
	page := runBinary(t, "man")
	dir := t.TempDir()
	file := filepath.Join(dir, "popfetch.1")
	if err := os.WriteFile(file, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	groff := requireTool(t, "groff", "groff-base")
	lintRoff(t, groff, file)
	if mandoc, err := exec.LookPath("mandoc"); err == nil {
		out, _ := exec.Command(mandoc, "-T", "lint", "-W", "warning", file).CombinedOutput()
		// The page has no date, so that make docs writes the same page
		// from the same source whenever it runs.
		var warnings []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" && !strings.Contains(l, "missing date") {
				warnings = append(warnings, l)
			}
		}
		if len(warnings) > 0 {
			t.Errorf("mandoc -T lint:\n%s", strings.Join(warnings, "\n"))
		}
	}
	man := requireTool(t, "man", "man-db")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, man, "-l", file)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", "LANG=C.UTF-8")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("man -l: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{"EXIT STATUS", "SIGNALS", "popfetch daemon --interval 5m", "max_backoff",
		"-k, --keep", "--lock-timeout=DURATION"} {
		if !strings.Contains(text, want) {
			t.Errorf("man -l renders no %q", want)
		}
	}
	// docs/config.md may use only the Markdown roff.Markdown knows.
	for _, markup := range []string{`\\f`, "`", `\]\(`, `\*\*[A-Za-z]`, "<!--", `\|---`, `\n#`} {
		if regexp.MustCompile(markup).MatchString(text) {
			t.Errorf("markup %s leaks into the rendered page:\n%s", markup, text)
		}
	}
}

// lintRoff runs groff with every warning on over file and fails on any.
func lintRoff(t *testing.T, groff, file string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, groff, "-ww", "-z", "-man", "-k", file).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("groff -ww -z -man: %v\n%s", err, out)
	}
}

// TestManPageHostile: whatever the command-line definition and the
// configuration reference hold, every line the page starts with a dot
// is a macro the generator meant, and groff reads it without a warning.
func TestManPageHostile(t *testing.T) {
	evil := ".so /etc/passwd\n'bp\n\\fB\\\\ \\*(Lq \x1b[31m\x00 \u00e9\u2014 -- `"
	app := &cli.App{
		Name:      "popfetch",
		Usage:     evil,
		ArgsUsage: ".TH x",
		Flags:     []cli.Flag{&cli.StringFlag{Name: "x-y", Usage: evil + " `.FILE`", DefaultText: ".nx"}},
		Commands: []*cli.Command{{
			Name: "evil", Usage: evil, Description: evil + "\n\n.ig\nbash: x\n.de",
			ArgsUsage: "'ACCOUNT",
			Flags:     []cli.Flag{&cli.BoolFlag{Name: "z", Usage: evil}, &cli.BoolFlag{Name: "no-usage"}},
		}, {Name: "bare"}},
	}
	ref := "# T\n\n" + evil + "\n\n## .SH X\n\n- .bp\n\n```\n.so x\n'x\n\\\n```\n\n| k | d | m |\n|---|---|---|\n" +
		"| `.a` | `'b` | .c \\| `x|y` [l](.q) **.r** |\n| [.x](y) |\n`open\n"
	var buf bytes.Buffer
	if err := writeManPage(&buf, app, ref); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	known := map[string]bool{".TH": true, ".SH": true, ".SS": true, ".PP": true, ".TP": true, ".IP": true,
		".RS": true, ".RE": true, ".nf": true, ".fi": true, ".br": true, ".B": true, ".BR": true, `.\"`: true}
	for i, line := range strings.Split(page, "\n") {
		if line == "" && i < strings.Count(page, "\n") {
			t.Errorf("line %d is blank (a blank line in the output)", i+1)
		}
		if strings.HasPrefix(line, "'") {
			t.Errorf("a line starts with an apostrophe: %q", line)
		}
		if strings.HasPrefix(line, ".") {
			macro, _, _ := strings.Cut(line, " ")
			if !known[macro] {
				t.Errorf("a line is a request the generator did not mean: %q", line)
			}
		}
		for _, r := range line {
			if r < 0x20 && r != '\t' || r == 0x7f || r > 0x7e {
				t.Errorf("a line holds a control or non-ASCII character: %q", line)
				break
			}
		}
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		requireTool(t, "groff", "groff-base")
	}
	file := filepath.Join(t.TempDir(), "evil.1")
	os.WriteFile(file, buf.Bytes(), 0o644)
	lintRoff(t, groff, file)
}

// TestManPageSynopsisDaemon: fetchmail's ways to start and stop the
// daemon are in the SYNOPSIS, where a reader coming from fetchmail looks.
func TestManPageSynopsisDaemon(t *testing.T) {
	syn := manSections(runBinary(t, "man"))["SYNOPSIS"]
	for _, want := range []string{bold("-d") + ` \fI\%INTERVAL\fR [` + bold("-N") + "]", bold("--quit")} {
		if !strings.Contains(syn, want) {
			t.Errorf("the SYNOPSIS lacks %q:\n%s", want, syn)
		}
	}
}
