package config

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// netrcPassword looks up the password for login on machine in a netrc
// file (the format of ftp(1) and curl): the first "machine" entry that
// matches both, else a "default" entry with that login or none. ok is
// false if there is no entry. Like ftp, it refuses a file that group or
// others can read.
func netrcPassword(path, machine, login string) (password string, ok bool, err error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("netrc: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", false, fmt.Errorf("netrc: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", false, &PermissionError{Path: path, Mode: fi.Mode()}
	}
	entries, err := parseNetrc(bufio.NewReader(f))
	if err != nil {
		return "", false, fmt.Errorf("netrc %s: %w", path, err)
	}
	for _, e := range entries {
		if strings.EqualFold(e.machine, machine) && (e.login == "" || e.login == login) && e.password != "" {
			return e.password, true, nil
		}
	}
	for _, e := range entries {
		if e.isDefault && (e.login == "" || e.login == login) && e.password != "" {
			return e.password, true, nil
		}
	}
	return "", false, nil
}

// netrcDefaultPath is $NETRC, else ~/.netrc.
func netrcDefaultPath() string {
	if p := os.Getenv("NETRC"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".netrc")
}

type netrcEntry struct {
	machine, login, password string
	isDefault                bool
}

// maxNetrc bounds the file read; a netrc is a few lines.
const maxNetrc = 1 << 20

// parseNetrc reads netrc tokens: machine NAME, default, login NAME,
// password SECRET, account NAME, and macdef NAME (whose body, up to an
// empty line, is skipped). Tokens may be quoted with double quotes.
func parseNetrc(r *bufio.Reader) ([]netrcEntry, error) {
	var data strings.Builder
	for data.Len() <= maxNetrc {
		line, err := r.ReadString('\n')
		data.WriteString(line)
		if err != nil {
			break
		}
	}
	if data.Len() > maxNetrc {
		return nil, fmt.Errorf("larger than %d octets", maxNetrc)
	}
	var (
		entries []netrcEntry
		cur     *netrcEntry
	)
	lines := strings.Split(data.String(), "\n")
	for i := 0; i < len(lines); i++ {
		toks := netrcTokens(lines[i])
		for j := 0; j < len(toks); j++ {
			arg := func() string {
				if j+1 < len(toks) {
					j++
					return toks[j]
				}
				return ""
			}
			switch toks[j] {
			case "machine":
				entries = append(entries, netrcEntry{machine: arg()})
				cur = &entries[len(entries)-1]
			case "default":
				entries = append(entries, netrcEntry{isDefault: true})
				cur = &entries[len(entries)-1]
			case "login":
				if v := arg(); cur != nil {
					cur.login = v
				}
			case "password":
				if v := arg(); cur != nil {
					cur.password = v
				}
			case "account":
				arg()
			case "macdef":
				// Skip the macro body: the following lines up to an
				// empty one.
				for i+1 < len(lines) && strings.TrimSpace(lines[i+1]) != "" {
					i++
				}
				j = len(toks)
			}
			if cur != nil && len(entries) > 0 {
				cur = &entries[len(entries)-1]
			}
		}
	}
	return entries, nil
}

// netrcTokens splits a line into whitespace-separated tokens; a token may
// be quoted with double quotes, with backslash escapes inside.
func netrcTokens(line string) []string {
	var toks []string
	for {
		line = strings.TrimLeft(line, " \t\r")
		if line == "" || (line[0] == '#' && len(toks) == 0) {
			return toks
		}
		if line[0] != '"' {
			end := strings.IndexAny(line, " \t\r")
			if end < 0 {
				return append(toks, line)
			}
			toks = append(toks, line[:end])
			line = line[end:]
			continue
		}
		var b strings.Builder
		i := 1
		for ; i < len(line) && line[i] != '"'; i++ {
			if line[i] == '\\' && i+1 < len(line) {
				i++
			}
			b.WriteByte(line[i])
		}
		toks = append(toks, b.String())
		if i >= len(line) {
			return toks
		}
		line = line[i+1:]
	}
}
