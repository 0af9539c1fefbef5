package main

import (
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// helpFlagRE finds the flags in a line of fetchmail --help or mpop
// --help: "  -c, --check  ...", "      --ssl ...", "  -C, --file=filename".
var helpFlagRE = regexp.MustCompile(`^\s+(-[^-\s],\s+)?(--[^\s=,]+|-[^-\s])`)

// toolFlags returns the flags the tool's --help lists: short ones as
// "-c", long ones as "--check", optional parts in brackets dropped
// ("--proto[col]" is "--proto", "--[fetch]all" is "--all").
func toolFlags(t *testing.T, tool string) []string {
	t.Helper()
	requireTool(t, tool, tool)
	out, _ := exec.Command(tool, "--help").CombinedOutput() // fetchmail exits non-zero after --help
	var flags []string
	bracket := regexp.MustCompile(`\[[^]]*\]`)
	for _, line := range strings.Split(string(out), "\n") {
		m := helpFlagRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[1] != "" {
			flags = append(flags, strings.TrimRight(strings.TrimSpace(m[1]), ","))
		}
		// "--keep[=(on|off)]": the regular expression stopped at "=".
		long := strings.TrimSuffix(m[2], "[")
		flags = append(flags, strings.TrimRight(bracket.ReplaceAllString(long, ""), ","))
	}
	if len(flags) < 20 {
		t.Fatalf("%s --help: found only %v in\n%s", tool, flags, out)
	}
	return flags
}

// migratingSection returns the table of docs/migrating.md under the
// heading "### name" in the section "## Command-line flags".
func migratingSection(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile("../../docs/migrating.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "## Command-line flags\n")
	if !ok {
		t.Fatal("docs/migrating.md has no section Command-line flags")
	}
	rest, _, _ = strings.Cut(rest, "\n## ")
	_, sec, ok := strings.Cut(rest, "### "+name+"\n")
	if !ok {
		t.Fatalf("docs/migrating.md has no table for %s", name)
	}
	sec, _, _ = strings.Cut(sec, "\n### ")
	return sec
}

// TestMigratingFlagTables: docs/migrating.md lists every flag of
// fetchmail --help and mpop --help, in the first column of its tool's
// table, and every popfetch flag the tables name in the second column
// exists.
func TestMigratingFlagTables(t *testing.T) {
	known := map[string]bool{"-h": true, "--help": true, "-vv": true} // -vv: -v counted
	app := newApp(io.Discard, io.Discard, &proc{})
	addFlags := func(names []string) {
		for _, n := range names {
			if len(n) == 1 {
				known["-"+n] = true
			} else {
				known["--"+n] = true
			}
		}
	}
	for _, f := range app.Flags {
		addFlags(f.Names())
	}
	for _, c := range app.Commands {
		for _, f := range c.Flags {
			addFlags(f.Names())
		}
	}
	code := regexp.MustCompile("`([^`]*)`")
	flagRE := regexp.MustCompile(`(?:^|\s)(--?[A-Za-z?][\w-]*)`)
	for _, tool := range []string{"fetchmail", "mpop"} {
		t.Run(tool, func(t *testing.T) {
			sec := migratingSection(t, tool)
			theirs := map[string]bool{}
			for _, line := range strings.Split(sec, "\n") {
				cols := strings.Split(line, "|")
				if len(cols) < 4 || strings.HasPrefix(strings.TrimSpace(cols[1]), "---") {
					continue
				}
				for _, m := range code.FindAllStringSubmatch(cols[1], -1) {
					theirs[m[1]] = true
				}
				for _, m := range code.FindAllStringSubmatch(cols[2], -1) {
					if strings.HasPrefix(m[1], "ssh ") { // a command, not ours
						continue
					}
					for _, f := range flagRE.FindAllStringSubmatch(m[1], -1) {
						if !known[f[1]] {
							t.Errorf("the %s table names popfetch %s, which popfetch does not have: %s", tool, f[1], line)
						}
					}
				}
			}
			for _, f := range toolFlags(t, tool) {
				if !theirs[f] {
					t.Errorf("docs/migrating.md's %s table lacks %s", tool, f)
				}
			}
		})
	}
}
