package migrate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"
)

// maxUIDFile bounds a UID file read whole: a million UIDs of 70 octets.
const maxUIDFile = 100 << 20

// LoadUIDs reads each account's UIDs from the file the tool kept them in,
// with readFile (os.ReadFile, or a test's). A missing file means the tool
// has fetched nothing for that account yet; it is noted, not an error.
func LoadUIDs(r *Result, readFile func(string) ([]byte, error)) error {
	for _, a := range r.Accounts {
		if a.UIDFile == "" {
			continue
		}
		data, err := readFile(a.UIDFile)
		if errors.Is(err, fs.ErrNotExist) {
			a.note("%s kept no UIDs for this account: %s does not exist.", r.Tool, a.UIDFile)
			continue
		}
		if err != nil {
			return err
		}
		if len(data) > maxUIDFile {
			return fmt.Errorf("%s: larger than %d MiB: not a UID file?", a.UIDFile, maxUIDFile>>20)
		}
		var uids map[string]time.Time
		switch r.Tool {
		case "fetchmail":
			uids = fetchids(data, a.User, a.Server)
		case "mpop":
			uids, err = mpopUIDLs(data, a.User, a.Server)
		case "getmail":
			uids, err = getmailOldmailUIDs(data)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", a.UIDFile, err)
		}
		a.UIDs = sortedUIDs(uids)
	}
	return nil
}

// fetchids reads fetchmail's .fetchids: lines "USER@HOST UID" for every
// mailbox; those of user at host are returned.
func fetchids(data []byte, user, host string) map[string]time.Time {
	out := map[string]time.Time{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		who, uid, ok := strings.Cut(line, " ")
		if !ok || uid == "" {
			continue
		}
		at := strings.LastIndexByte(who, '@')
		if at < 0 {
			continue
		}
		if who[:at] == user && strings.EqualFold(who[at+1:], host) {
			out[strings.TrimSpace(uid)] = time.Time{}
		}
	}
	return out
}

// mpopUIDLs reads an mpop UIDLs file: after comment lines, a line " N HOST
// USER" starts a list of N UIDs, one per line.
func mpopUIDLs(data []byte, user, host string) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimRight(lines[i], "\r")
		if !strings.HasPrefix(line, " ") {
			continue // comments, and the version line
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: %q is not \" COUNT HOST USER\"", i+1, line)
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n < 0 || i+n >= len(lines) {
			return nil, fmt.Errorf("line %d: bad UID count %q", i+1, f[0])
		}
		mine := strings.EqualFold(f[1], host) && f[2] == user
		for k := 1; k <= n; k++ {
			if mine {
				out[strings.TrimRight(lines[i+k], "\r")] = time.Time{}
			}
		}
		i += n
	}
	return out, nil
}

// getmailOldmailUIDs reads a getmail oldmail file: "UID\0UNIXTIME" lines.
func getmailOldmailUIDs(data []byte) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	for i, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		uid, ts, ok := strings.Cut(line, "\x00")
		if !ok {
			return nil, fmt.Errorf("line %d: no NUL between UID and time", i+1)
		}
		var when time.Time
		if n, err := strconv.ParseFloat(strings.TrimSpace(ts), 64); err == nil && n > 0 {
			when = time.Unix(int64(n), 0)
		}
		out[uid] = when
	}
	return out, nil
}
