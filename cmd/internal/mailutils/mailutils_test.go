package mailutils

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The vectors of Drepper's SHA-crypt specification.
func TestMailutilsSHA512Crypt(t *testing.T) {
	for _, c := range []struct {
		key, salt string
		rounds    int
		custom    bool
		want      string
	}{
		{"Hello world!", "saltstring", 5000, false,
			"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"Hello world!", "saltstringsaltstring", 10000, true,
			"$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
		{"This is just a test", "toolongsaltstring", 5000, true,
			"$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
		{"we have a short salt string but not a short password", "short", 77777, true,
			"$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"},
	} {
		if got := sha512Crypt([]byte(c.key), c.salt, c.rounds, c.custom); got != c.want {
			t.Errorf("sha512Crypt(%q, %q, %d):\n got %s\nwant %s", c.key, c.salt, c.rounds, got, c.want)
		}
	}
	// Keys longer than a SHA-512 block, and what openssl makes, if present.
	key := strings.Repeat("k", 150)
	if out, err := exec.Command("openssl", "passwd", "-6", "-salt", "abcdefgh", key).Output(); err == nil {
		if got, want := SHA512Crypt(key, "abcdefgh"), strings.TrimSpace(string(out)); got != want {
			t.Errorf("SHA512Crypt of a 150-byte key: got %s, openssl says %s", got, want)
		}
	}
}

func TestMailutilsWriteMbox(t *testing.T) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	now := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	writeMbox(w, []byte("Subject: x\n\nFrom here\n>From there\n>>From  far\nFromage\n no From \nend"), now)
	writeMbox(w, []byte("Subject: y\n\n"), now)
	w.Flush()
	want := "From sender@example.com Tue Jan  2 03:04:05 2024\nSubject: x\n\n>From here\n>>From there\n>>>From  far\nFromage\n no From \nend\n\n" +
		"From sender@example.com Tue Jan  2 03:04:05 2024\nSubject: y\n\n\n"
	if buf.String() != want {
		t.Errorf("got\n%q\nwant\n%q", buf.String(), want)
	}
}

func startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start(context.Background(), opts)
	if errors.Is(err, ErrNotInstalled) || errors.Is(err, ErrNotRoot) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must run the Mailutils pop3d tests: %v", err)
		}
		t.Skipf("SKIPPING test against GNU Mailutils pop3d: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// session is a minimal POP3 client for checking the server by hand.
type session struct {
	t        *testing.T
	conn     net.Conn
	r        *bufio.Reader
	greeting string
}

func dial(t *testing.T, addr string, tlsConf *tls.Config) *session {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		conn = tls.Client(conn, tlsConf)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { conn.Close() })
	c := &session{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.greeting = c.line("+OK")
	return c
}

func (c *session) line(want string) string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatal(err)
	}
	if !strings.HasPrefix(l, want) {
		c.t.Fatalf("got %q, want %s...", l, want)
	}
	return l
}

func (c *session) cmd(line, want string) string {
	c.t.Helper()
	fmt.Fprintf(c.conn, "%s\r\n", line)
	return c.line(want)
}

// multi reads a multi-line reply's body, undoing dot-stuffing, with the
// CRLF line ends as sent.
func (c *session) multi() []byte {
	c.t.Helper()
	var out []byte
	for {
		l, err := c.r.ReadBytes('\n')
		if err != nil {
			c.t.Fatal(err)
		}
		if string(l) == ".\r\n" {
			return out
		}
		out = append(out, bytes.TrimPrefix(l, []byte("."))...)
	}
}

func TestMailutilsServer(t *testing.T) {
	s := startServer(t, Options{Transcript: true})
	if err := s.AddUser("alice", "secret pw"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser("alice", "again"); err == nil {
		t.Error("a user was added twice")
	}
	msgs := [][]byte{
		[]byte("Subject: one\n\nFrom the start\n>From quoted\n.dot\n"),
		[]byte("Subject: two\n\nno final newline"),
		[]byte("Subject: three\n\nends with an empty line\n\n"),
	}
	if err := s.Deliver("alice", msgs...); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count("alice"); n != 3 || err != nil {
		t.Fatalf("Count: %d, %v", n, err)
	}
	fi, err := os.Stat(s.Mailbox("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o600 || int(st.Uid) != s.uid {
		t.Errorf("mbox mode %v uid %d, want 0600 and %d", fi.Mode().Perm(), st.Uid, s.uid)
	}

	// What pop3d sends and states for messages in an mbox it never
	// opened (see the package doc).
	c := dial(t, s.NoTLSAddr(), nil)
	c.cmd("USER "+s.Login("alice"), "+OK")
	c.cmd("PASS secret pw", "+OK")
	delivered := map[int]int{}
	total := 0
	for i, m := range msgs {
		delivered[i+1] = len(crlf(m))
		total += len(crlf(m))
	}
	// Before any UID is asked for: the sizes as delivered; RETR sends
	// the message as it was delivered.
	if got, want := c.cmd("STAT", "+OK"), fmt.Sprintf("+OK 3 %d\r\n", total); got != want {
		t.Errorf("STAT before UIDL: %q, want %q", got, want)
	}
	c.cmd("LIST", "+OK")
	listBefore := listSizes(c.multi())
	c.cmd("RETR 3", "+OK")
	if got := c.multi(); !bytes.Equal(got, crlf(msgs[2])) {
		t.Errorf("RETR 3 before UIDL:\n got %q\nwant %q", got, crlf(msgs[2]))
	}
	// Once the UIDs are known: X-UIDL at the end of the header, counted
	// by STAT and LIST.
	c.cmd("UIDL", "+OK")
	uids := map[int]string{}
	for _, l := range strings.Split(string(c.multi()), "\r\n") {
		if f := strings.Fields(l); len(f) == 2 {
			n, _ := strconv.Atoi(f[0])
			uids[n] = f[1]
		}
	}
	c.cmd("LIST", "+OK")
	listAfter := listSizes(c.multi())
	stat := c.cmd("STAT", "+OK")
	retr := map[int]int{}
	for i, m := range msgs {
		n := i + 1
		c.cmd(fmt.Sprintf("RETR %d", n), "+OK")
		got := c.multi()
		head, body, _ := bytes.Cut(crlf(m), []byte("\r\n\r\n"))
		want := []byte(string(head) + "\r\nX-UIDL: " + uids[n] + "\r\n\r\n" + string(body))
		if !bytes.Equal(got, want) {
			t.Errorf("RETR %d:\n got %q\nwant %q", n, got, want)
		}
		retr[n] = len(got)
	}
	c.cmd("LIST", "+OK")
	listLast := listSizes(c.multi())
	c.cmd("QUIT", "+OK")
	for i := range msgs {
		n := i + 1
		t.Logf("message %d: %d octets as delivered (CRLF); LIST %d before UIDL, %d after UIDL, %d after RETR; RETR sent %d (X-UIDL line: %d)",
			n, delivered[n], listBefore[n], listAfter[n], listLast[n], retr[n], len("X-UIDL: \r\n")+len(uids[n]))
		if listBefore[n] != delivered[n] || listAfter[n] != retr[n] || retr[n] != delivered[n]+len("X-UIDL: \r\n")+len(uids[n]) {
			t.Errorf("message %d: the sizes are not what the package doc says", n)
		}
		// Each further pass over a message with quoted "From " lines adds
		// to its size; the others keep theirs.
		if n != 1 && listLast[n] != retr[n] {
			t.Errorf("message %d: LIST %d after RETR, RETR sent %d", n, listLast[n], retr[n])
		}
	}
	t.Logf("STAT after UIDL and LIST: %q; the messages' RETR octets add up to %d", strings.TrimSpace(stat), retr[1]+retr[2]+retr[3])

	// Each listener; the sessions leave the mbox rewritten.
	for _, l := range []struct {
		name string
		addr string
		tls  *tls.Config
	}{
		{"stls", s.PlainAddr(), nil},
		{"pop3s", s.TLSAddr(), s.Cert.ClientConfig("127.0.0.1")},
		{"plain", s.NoTLSAddr(), nil},
	} {
		c := dial(t, l.addr, l.tls)
		c.cmd("CAPA", "+OK")
		capa := string(c.multi())
		if hasSTLS := strings.Contains(capa, "STLS\r\n"); hasSTLS != (l.name == "stls") {
			t.Errorf("%s: CAPA %q", l.name, capa)
		}
		if l.name == "stls" {
			c.cmd("STLS", "+OK")
			tc := tls.Client(c.conn, s.Cert.ClientConfig("127.0.0.1"))
			if err := tc.Handshake(); err != nil {
				t.Fatalf("STLS handshake: %v", err)
			}
			c.conn, c.r = tc, bufio.NewReader(tc)
		}
		c.cmd("USER "+s.Login("alice"), "+OK")
		c.cmd("PASS secret pw", "+OK")
		c.cmd("QUIT", "+OK")
	}

	// Once pop3d has rewritten the mbox, it sends the fields it stored
	// there too; the UIDs stay.
	c = dial(t, s.NoTLSAddr(), nil)
	c.cmd("USER "+s.Login("alice"), "+OK")
	c.cmd("PASS secret pw", "+OK")
	c.cmd("LIST", "+OK")
	list := listSizes(c.multi())
	for i, m := range msgs {
		reply := c.cmd(fmt.Sprintf("UIDL %d", i+1), "+OK")
		if uid := strings.Fields(reply)[2]; uid != uids[i+1] {
			t.Errorf("message %d: UID %s, was %s", i+1, uid, uids[i+1])
		}
		c.cmd(fmt.Sprintf("RETR %d", i+1), "+OK")
		got := c.multi()
		rest, added := cutAdded(got)
		if !bytes.Equal(rest, crlf(m)) {
			t.Errorf("RETR %d again:\n got %q\nwant %q", i+1, got, crlf(m))
		}
		t.Logf("message %d in the rewritten mbox: LIST %d, RETR %d, fields added %q", i+1, list[i+1], len(got), added)
		if list[i+1] != len(got) {
			t.Errorf("message %d in the rewritten mbox: LIST %d, RETR %d", i+1, list[i+1], len(got))
		}
	}
	c.cmd("DELE 2", "+OK")
	c.cmd("QUIT", "+OK")
	if n, err := s.Count("alice"); n != 2 || err != nil {
		t.Errorf("Count after DELE: %d, %v", n, err)
	}
	// A wrong password, and a name without the domain, are refused.
	c = dial(t, s.NoTLSAddr(), nil)
	c.cmd("USER "+s.Login("alice"), "+OK")
	c.cmd("PASS wrong", "-ERR")
	c = dial(t, s.NoTLSAddr(), nil)
	c.cmd("USER alice", "+OK")
	c.cmd("PASS secret pw", "-ERR")
	// The greeting has an APOP timestamp, but there are no APOP secrets,
	// and the system's are not consulted.
	c = dial(t, s.NoTLSAddr(), nil)
	if !regexp.MustCompile(`<[^>]+@[^>]+>`).MatchString(c.greeting) {
		t.Errorf("greeting %q has no timestamp", c.greeting)
	}
	c.cmd("APOP "+s.Login("alice")+" 0123456789abcdef0123456789abcdef", "-ERR [AUTH]")
	// Deliver after pop3d rewrote the mbox, and deleted from it.
	if err := s.Deliver("alice", []byte("Subject: four\n\nfour\n")); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count("alice"); n != 3 || err != nil {
		t.Errorf("Count: %d, %v", n, err)
	}
	if log := s.Log(); !strings.Contains(log, "logged in with mailbox") || !strings.Contains(log, "C: PASS ***") ||
		strings.Contains(log, "secret pw") || strings.Contains(log, "non-properly terminated") ||
		strings.Contains(log, "/etc/apop.db") || !strings.Contains(log, s.Dir+"/apop.db") {
		t.Errorf("log (want logins, a transcript without the password, no TLS close errors, the private APOP file):\n%s", log)
	}

	pid := s.cmd.Process.Pid
	if data, _ := os.ReadFile(s.Dir + "/pop3d.pid"); strings.TrimSpace(string(data)) != strconv.Itoa(pid) {
		t.Errorf("pidfile %q, started %d", data, pid)
	}
	dir := s.Dir
	s.Stop()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("pop3d %d still runs after Stop", pid)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("%s is left", dir)
	}
	if _, err := net.DialTimeout("tcp", s.PlainAddr(), time.Second); err == nil {
		t.Error("the port still accepts connections after Stop")
	}
}

// crlf is m with CRLF line ends and a final line break, as POP3 sends it.
func crlf(m []byte) []byte {
	if !bytes.HasSuffix(m, []byte("\n")) {
		m = append(m[:len(m):len(m)], '\n')
	}
	return bytes.ReplaceAll(m, []byte("\n"), []byte("\r\n"))
}

// addedFields are the header fields pop3d puts at the end of a header.
var addedFields = []string{"X-UIDL:", "X-IMAPbase:", "X-UID:", "Status:"}

// cutAdded removes the fields pop3d added (each at most once, at the end
// of the header) from a message as sent, and names them.
func cutAdded(m []byte) ([]byte, []string) {
	head, body, ok := bytes.Cut(m, []byte("\r\n\r\n"))
	if !ok {
		return m, nil
	}
	lines := strings.SplitAfter(string(head)+"\r\n", "\r\n")
	lines = lines[:len(lines)-1]
	var added []string
	seen := map[string]bool{}
	for len(lines) > 1 {
		last := lines[len(lines)-1]
		name, _, _ := strings.Cut(last, " ")
		known := false
		for _, f := range addedFields {
			known = known || name == f
		}
		if !known || seen[name] {
			break
		}
		seen[name] = true
		added = append([]string{strings.TrimSuffix(name, ":")}, added...)
		lines = lines[:len(lines)-1]
	}
	return []byte(strings.Join(lines, "") + "\r\n" + string(body)), added
}

// listSizes parses a LIST reply's lines.
func listSizes(body []byte) map[int]int {
	sizes := map[int]int{}
	for _, l := range strings.Split(string(body), "\r\n") {
		var n, size int
		if _, err := fmt.Sscanf(l, "%d %d", &n, &size); err == nil {
			sizes[n] = size
		}
	}
	return sizes
}
