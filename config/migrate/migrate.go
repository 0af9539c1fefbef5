// Package migrate converts the configuration and UID state of fetchmail,
// mpop and getmail6 into popfetch's: a TOML configuration with a comment
// on every option that has no equivalent, and the UIDs each tool already
// fetched, so that mail it left on the server is not fetched again.
//
// Converting is reading only: nothing here writes files or connects.
package migrate

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/user"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/popfetch/popfetch/config"
)

// Result is a converted configuration.
type Result struct {
	Tool     string   // "fetchmail", "mpop" or "getmail"
	Sources  []string // the files read
	Notes    []string // about options that apply to every account
	Accounts []*Account
}

// Account is one converted mailbox.
type Account struct {
	Name   string
	Server string
	Port   int
	User   string
	// Disabled accounts are written commented out (fetchmail's skip).
	Disabled bool
	Keys     []Key    // in the order written
	Notes    []string // options that did not convert, and why
	// UIDFile is where the tool kept this account's UIDs; UIDs are those
	// read from it by LoadUIDs.
	UIDFile string
	UIDs    []UID

	pollEvery int // fetchmail's interval: poll on every Nth daemon cycle
}

// Key is one popfetch key and its value: a string, an int, an int64, a
// bool or a []string.
type Key struct {
	Name  string
	Value any
}

// UID is a message the old tool fetched, and when, if it kept that.
type UID struct {
	UID  string
	Seen time.Time // zero if the tool kept no time
}

func (a *Account) set(name string, v any) {
	for i := range a.Keys {
		if a.Keys[i].Name == name {
			a.Keys[i].Value = v
			return
		}
	}
	a.Keys = append(a.Keys, Key{name, v})
}

// setTarget sets the delivery target, replacing any other.
func (a *Account) setTarget(name string, v any) {
	for _, k := range []string{"maildir", "mbox", "mda", "lmtp"} {
		if k != name {
			a.unset(k)
		}
	}
	a.set(name, v)
}

func (a *Account) get(name string) (any, bool) {
	for _, k := range a.Keys {
		if k.Name == name {
			return k.Value, true
		}
	}
	return nil, false
}

func (a *Account) unset(name string) {
	for i, k := range a.Keys {
		if k.Name == name {
			a.Keys = append(a.Keys[:i], a.Keys[i+1:]...)
			return
		}
	}
}

func (a *Account) note(format string, args ...any) {
	a.Notes = append(a.Notes, fmt.Sprintf(format, args...))
}

// Write writes r as a popfetch configuration file.
func Write(w io.Writer, r *Result) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# popfetch configuration converted from %s (%s) by popfetch import.\n", r.Tool, strings.Join(r.Sources, ", "))
	fmt.Fprintf(bw, "# Check it with: popfetch config check. Comments mark what did not convert.\n")
	if holdsPassword(r) {
		fmt.Fprintf(bw, "# It holds passwords: save it with mode 600 (popfetch refuses it otherwise).\n")
	}
	for _, n := range r.Notes {
		writeComment(bw, "", n)
	}
	for _, a := range r.Accounts {
		prefix := ""
		if a.Disabled {
			prefix = "# "
		}
		bw.WriteString("\n")
		for _, n := range a.Notes {
			writeComment(bw, "", n)
		}
		bw.WriteString(prefix + "[[account]]\n")
		for _, k := range a.Keys {
			bw.WriteString(prefix + k.Name + " = " + tomlValue(k.Value) + "\n")
		}
	}
	return bw.Flush()
}

func holdsPassword(r *Result) bool {
	for _, a := range r.Accounts {
		if _, ok := a.get("password"); ok {
			return true
		}
	}
	return false
}

// writeComment writes a note as comment lines of at most about 100
// columns.
func writeComment(w *bufio.Writer, prefix, note string) {
	// The note quotes the input: keep it a comment, and valid TOML.
	note = strings.Map(func(r rune) rune {
		if (r < ' ' && r != '\t' && r != '\n') || r == 0x7f || r == '\uFFFD' {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(note, "?"))
	line := "#"
	for _, word := range strings.Fields(note) {
		if len(line)+1+len(word) > 100 && line != "#" {
			w.WriteString(prefix + line + "\n")
			line = "#  "
		}
		line += " " + word
	}
	w.WriteString(prefix + line + "\n")
}

func tomlValue(v any) string {
	switch v := v.(type) {
	case string:
		return config.Quote(v)
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case bool:
		return strconv.FormatBool(v)
	case []string:
		q := make([]string, len(v))
		for i, s := range v {
			q[i] = config.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	return config.Quote(fmt.Sprint(v))
}

var badNameChars = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^A-Za-z0-9._@+-]+`) })

// accountName makes a popfetch account name from s, unique in taken.
func accountName(s string, taken map[string]bool) string {
	n := strings.Trim(badNameChars().ReplaceAllString(s, "-"), "-._@+")
	if n == "" {
		n = "account"
	}
	base := n
	for i := 2; taken[n]; i++ {
		n = base + "-" + strconv.Itoa(i)
	}
	taken[n] = true
	return n
}

// shellChars are those that make a command need a shell.
const shellChars = "|&;<>()$`*?[]{}\n"

// command converts a command line that the old tool ran with /bin/sh -c
// into a popfetch command, which runs without a shell. A plain command
// becomes its words. One that needs a shell (a pipe, a redirection, a
// variable) is run by /bin/sh explicitly, with %F and %T handed over as
// the positional parameters $1 and $2, so that a sender address can never
// become shell syntax (see shellParams). viaShell reports the latter.
func command(line string) (argv []string, viaShell bool) {
	if !strings.ContainsAny(line, shellChars) {
		// An empty program name ('' x) is not a command popfetch can
		// run; the shell form keeps what fetchmail would have run.
		if words, err := config.SplitWords(line); err == nil && len(words) > 0 && words[0] != "" {
			return words, false
		}
	}
	return []string{"/bin/sh", "-c", shellParams(line), "sh", "%F", "%T"}, true
}

// shellParams replaces %F and %T in a shell command line by $1 and $2,
// quoted for where they stand so that the shell expands each to exactly
// one word, whatever it holds: "$1" outside quotes, $1 inside double
// quotes ("<%F>" becomes "<$1>"), and inside single quotes, where nothing
// expands, the quote is closed around "$1" ('<%F>' becomes '<'"$1"'>').
// %% is left alone, and so is anything after a backslash outside single
// quotes.
func shellParams(line string) string {
	var b strings.Builder
	const (
		plain = iota
		single
		double
	)
	state := plain
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && state != single && i+1 < len(line):
			b.WriteByte(c)
			i++
			b.WriteByte(line[i])
			continue
		case c == '\'' && state == plain:
			state = single
		case c == '\'' && state == single:
			state = plain
		case c == '"' && state == plain:
			state = double
		case c == '"' && state == double:
			state = plain
		case c == '%' && i+1 < len(line) && line[i+1] == '%':
			b.WriteString("%%")
			i++
			continue
		case c == '%' && i+1 < len(line) && (line[i+1] == 'F' || line[i+1] == 'T'):
			param := "$1"
			if line[i+1] == 'T' {
				param = "$2"
			}
			switch state {
			case plain:
				b.WriteString(`"` + param + `"`)
			case double:
				b.WriteString(param)
			case single:
				b.WriteString(`'"` + param + `"'`)
			}
			i++
			continue
		}
		b.WriteByte(c)
	}
	// '%F' became ''"$1"'': the same word, said plainly.
	out := strings.ReplaceAll(b.String(), `''"$1"''`, `"$1"`)
	return strings.ReplaceAll(out, `''"$2"''`, `"$2"`)
}

// sortedUIDs returns uids sorted, for stable output.
func sortedUIDs(m map[string]time.Time) []UID {
	out := make([]UID, 0, len(m))
	for u, t := range m {
		out = append(out, UID{u, t})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}

// isSHA256 reports whether a fingerprint is a SHA-256 one (64 hex digits,
// colons allowed), the only kind popfetch pins.
func isSHA256(fp string) bool { return len(strings.ReplaceAll(fp, ":", "")) == 64 }

// loginName is the user's login name, as the tools use it by default.
func loginName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

// seconds writes n seconds as a popfetch duration: "10m", "90s", "2h".
func seconds(n int) string {
	switch {
	case n%3600 == 0:
		return strconv.Itoa(n/3600) + "h"
	case n%60 == 0:
		return strconv.Itoa(n/60) + "m"
	}
	return strconv.Itoa(n) + "s"
}

// pathKeys are the keys whose value is a file's path.
var pathKeys = []string{"maildir", "mbox", "ca_file", "client_cert", "client_key", "password_file"}

// noteRelativePaths notes every relative path in the converted accounts:
// the old tool took it from the directory it ran in, popfetch takes it
// from the directory its configuration file is in.
func noteRelativePaths(r *Result) {
	for _, a := range r.Accounts {
		for _, k := range a.Keys {
			p, ok := k.Value.(string)
			if !ok || p == "" || !slices.Contains(pathKeys, k.Name) || strings.HasPrefix(p, "/") || strings.HasPrefix(p, "~") || strings.HasPrefix(p, "$") {
				continue
			}
			a.note("%s %q is a relative path: %s took it from the directory it ran in, popfetch takes it from the directory of its configuration file; write it out in full if that is not the place.", k.Name, p, r.Tool)
		}
	}
}
