// Package mailutils starts a private GNU Mailutils pop3d on loopback ports
// for end-to-end tests: a second real POP3 server beside Dovecot, with an
// mbox store, its own UIDL scheme, header fields of its own in what it
// sends, and sizes that are not always the octets RETR sends.
//
// # The recipe (pop3d 3.15, Debian 12), found by experiment
//
// The instance has its own configuration file (pop3d --config-file=FILE,
// which also skips the site-wide /etc/mailutils.conf; Start checks it with
// --config-lint first) and lives in one temporary directory DIR:
//
//	mode daemon;                 # without it --foreground serves stdin
//	pidfile DIR/pop3d.pid;
//	logging { syslog no; print-severity yes; };   # log to standard error
//	auth { authentication generic; authorization virtdomain; };
//	virtdomain { passwd-dir DIR/passwd; };
//	mailbox { mailbox-type mbox; };
//	apop-database-file DIR/apop.db;               # absent: APOP refused
//	tls { ssl-certificate-file DIR/cert.pem; ssl-key-file DIR/key.pem; };
//	tls-file-checks { key-file none; cert-file none; ca-file none; };
//	server 127.0.0.1:P1 { tls-mode stls; };        # POP3 offering STLS
//	server 127.0.0.1:P2 { tls-mode connection; };  # POP3S
//	server 127.0.0.1:P3 { tls-mode false; };       # POP3, no STLS in CAPA
//
// pop3d runs in the foreground in its own process group, its standard
// output and error a file (it and every session process it forks write to
// it for their whole lives; a pipe would have to be drained). Stop ends the
// whole group: a session process inherits the listening sockets, so one
// left talking to a client keeps the ports open after the master is gone.
//
// Users are virtual, so the system's users are left alone: DIR/passwd/DOMAIN
// is a passwd(5) file, one line a user, "name:HASH:UID:GID:gecos:HOME:shell",
// and the user logs in as name@DOMAIN (a name without the domain is
// "nonexistent"). What was learnt on the way:
//
//   - HASH must be a crypt(3) hash ("$6$..." from SHA512Crypt, or
//     `openssl passwd -6`; "$1$" works too): "generic" authentication
//     compares crypt(password, HASH) with HASH, so a plain password in the
//     file never matches.
//   - Only "generic" authenticates virtual users: "authentication
//     virtdomain" and "authentication system" pass --config-lint and then
//     refuse every login ("authentication failed"). Leaving the
//     authentication list out works too (generic is the default).
//   - The maildrop is HOME/INBOX, an mbox; mailbox-pattern is ignored for
//     virtual users.
//   - pop3d does not switch to UID/GID for a virtual user: the session runs
//     as root with group mail, and makes its dot-lock (HOME/INBOX.lock,
//     root:mail) in HOME. The mbox is kept as a delivery agent would leave
//     it all the same: mode 600, owned by the user's UID/GID (nobody here).
//   - The greeting always carries an APOP timestamp; without an APOP
//     database APOP is refused with "-ERR [AUTH] Bad login".
//   - A password is never logged; with Options.Transcript the transcript
//     shows "PASS ***".
//
// # What pop3d does to the mail
//
//   - Quoting is mboxrd: a line ">From " (any number of '>') loses one '>'
//     on the way out; Deliver adds one to every such line.
//   - Once a session has asked for a message's UID (UIDL, or UIDL n for
//     that message), pop3d adds an X-UIDL field at the end of its header:
//     RETR and TOP send it, and STAT and LIST count it. Before that they
//     count, and RETR sends, the message as stored (CRLF line ends, the
//     mboxrd '>' removed).
//   - At the end of every session that opened the mbox (a login and QUIT
//     are enough) pop3d rewrites it, storing X-UIDL (for the UIDs computed),
//     X-UID and Status on every message and X-IMAPbase on the first. Later
//     sessions count and send those fields; the UIDs stay the same.
//   - For a message with mboxrd-quoted lines, the size STAT and LIST state
//     grows as the session goes on: after UIDL, the first LIST is right,
//     but each further pass over the message (another LIST or STAT, a RETR)
//     adds some 40 octets for one quoted line; without UIDL, from the
//     second RETR on. The first size asked for after UIDL (popfetch's
//     order: UIDL, LIST, RETR) is the one to trust. The unquoting filter's
//     size accounting, presumably; seen with pop3d 3.15.
package mailutils

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/popfetch/popfetch/cmd/internal/testhost"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// ErrNotInstalled is returned by Start when GNU Mailutils' pop3d is missing.
var ErrNotInstalled = errors.New("GNU Mailutils pop3d is not installed (apt-get install mailutils-pop3d)")

// ErrNotRoot is returned by Start when not running as root.
var ErrNotRoot = errors.New("a private Mailutils pop3d needs root (it runs its sessions as root:mail, and the mbox belongs to the mail user)")

// DefaultDomain is the virtual domain users are added to unless
// Options.Domain says otherwise.
const DefaultDomain = "popfetch.test"

// Options adjust Start.
type Options struct {
	// Domain is the virtual mail domain; users log in as name@Domain.
	Domain string
	// Transcript makes pop3d log every session's commands and replies
	// (message text included; PASS shown as ***). pop3d takes it only
	// inside each server block.
	Transcript bool
}

// Server is a running private pop3d.
type Server struct {
	Dir       string // everything lives below it
	Domain    string // users log in as name@Domain (see Login)
	PlainPort int    // POP3 offering STLS (tls-mode stls)
	TLSPort   int    // POP3S (tls-mode connection)
	NoTLSPort int    // POP3 without TLS (tls-mode false): CAPA has no STLS
	// Cert is the server's certificate, for 127.0.0.1 and localhost;
	// CertFile holds it as PEM (a client's ca_file).
	Cert     *pop3test.Cert
	CertFile string

	cmd      *exec.Cmd
	exited   chan struct{}
	uid, gid int    // the owner of the users' mail
	mailRoot string // the users' homes are below it
	mu       sync.Mutex
	users    map[string]bool
	stopOnce sync.Once
}

var binaryOnce struct {
	sync.Once
	path string
	err  error
}

// Binary returns the path of GNU Mailutils' pop3d, or ErrNotInstalled.
// Another program named pop3d (not from Mailutils) does not count.
func Binary() (string, error) {
	binaryOnce.Do(func() {
		binaryOnce.err = ErrNotInstalled
		for _, p := range []string{"/usr/sbin/pop3d", "pop3d"} {
			path, err := exec.LookPath(p)
			if err != nil {
				continue
			}
			out, _ := exec.Command(path, "--version").Output()
			if bytes.Contains(out, []byte("GNU Mailutils")) {
				binaryOnce.path, binaryOnce.err = path, nil
				return
			}
		}
	})
	return binaryOnce.path, binaryOnce.err
}

// Start starts a private pop3d and waits, at most 15 seconds, until each
// of its listeners accepts connections and greets.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if opts.Domain == "" {
		opts.Domain = DefaultDomain
	}
	if strings.ContainsAny(opts.Domain, "/@:\n \t\"") || opts.Domain[0] == '.' {
		return nil, fmt.Errorf("mailutils: bad domain %q", opts.Domain)
	}
	uid, gid, err := testhost.MailUser()
	if err != nil {
		return nil, err
	}
	return testhost.Start(func() (*Server, error) { return start(ctx, bin, uid, gid, opts) })
}

func start(ctx context.Context, bin string, uid, gid int, opts Options) (*Server, error) {
	dir, err := os.MkdirTemp("", "popfetch-mailutils-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, Domain: opts.Domain, uid: uid, gid: gid, exited: make(chan struct{}),
		mailRoot: filepath.Join(dir, "mail"), users: map[string]bool{}}
	conf, err := s.setup(opts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if out, err := exec.Command(bin, "--config-file="+conf, "--config-lint").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("mailutils: pop3d --config-lint: %v\n%s", err, out)
	}
	s.cmd = exec.Command(bin, "--config-file="+conf, "--foreground")
	// pop3d logs to its standard error for its whole life, and so do the
	// session processes it forks: give them a file, never a pipe someone
	// has to drain.
	logf, err := os.OpenFile(s.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Its own process group, which Stop ends as a whole.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("mailutils: start pop3d: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	if err := s.waitReady(ctx); err != nil {
		log := s.LogTail()
		s.Stop()
		if strings.Contains(log, "in use") {
			return nil, fmt.Errorf("mailutils: %w: %v", testhost.ErrPortTaken, err)
		}
		return nil, err
	}
	return s, nil
}

// setup writes the certificate, the (empty) passwd file and the
// configuration, and returns the configuration's path.
func (s *Server) setup(opts Options) (string, error) {
	ports, err := testhost.FreePorts(3)
	if err != nil {
		return "", err
	}
	s.PlainPort, s.TLSPort, s.NoTLSPort = ports[0], ports[1], ports[2]
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		return "", err
	}
	if err := os.Mkdir(s.mailRoot, 0o755); err != nil {
		return "", err
	}
	if err := os.Mkdir(filepath.Join(s.Dir, "passwd"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(s.passwdFile(), nil, 0o600); err != nil {
		return "", err
	}
	if s.Cert, err = pop3test.NewCert(24*time.Hour, "127.0.0.1", "localhost"); err != nil {
		return "", err
	}
	s.CertFile = filepath.Join(s.Dir, "cert.pem")
	if err := os.WriteFile(s.CertFile, s.Cert.CertPEM, 0o644); err != nil {
		return "", err
	}
	key := filepath.Join(s.Dir, "key.pem")
	if err := os.WriteFile(key, s.Cert.KeyPEM, 0o600); err != nil {
		return "", err
	}
	transcript := "no"
	if opts.Transcript {
		transcript = "yes"
	}
	conf := fmt.Sprintf(`# A private GNU Mailutils pop3d for popfetch's tests.
mode daemon;
pidfile %[1]q;
logging {
  syslog no;
  print-severity yes;
};
auth {
  authentication generic;
  authorization virtdomain;
};
virtdomain {
  passwd-dir %[3]q;
};
mailbox {
  mailbox-type mbox;
};
# No APOP secrets (the file does not exist): pop3d still puts a timestamp
# in its greeting and refuses APOP, as stock installations do; naming the
# file keeps the instance off the system's /etc/apop.db.
apop-database-file %[9]q;
tls {
  ssl-certificate-file %[4]q;
  ssl-key-file %[5]q;
  ssl-priorities "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
};
tls-file-checks {
  key-file none;
  cert-file none;
  ca-file none;
};
max-children 64;
server 127.0.0.1:%[6]d {
  tls-mode stls;
  backlog 64;
  transcript %[2]s;
};
server 127.0.0.1:%[7]d {
  tls-mode connection;
  backlog 64;
  transcript %[2]s;
};
server 127.0.0.1:%[8]d {
  tls-mode false;
  backlog 64;
  transcript %[2]s;
};
`, filepath.Join(s.Dir, "pop3d.pid"), transcript, filepath.Join(s.Dir, "passwd"), s.CertFile, key,
		s.PlainPort, s.TLSPort, s.NoTLSPort, filepath.Join(s.Dir, "apop.db"))
	path := filepath.Join(s.Dir, "pop3d.conf")
	return path, os.WriteFile(path, []byte(conf), 0o644)
}

func (s *Server) logPath() string    { return filepath.Join(s.Dir, "pop3d.log") }
func (s *Server) passwdFile() string { return filepath.Join(s.Dir, "passwd", s.Domain) }

// waitReady waits until both plain listeners greet and the POP3S one
// completes a TLS handshake and greets.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	pending := []string{s.PlainAddr(), s.NoTLSAddr(), s.TLSAddr()}
	for {
		var still []string
		for _, addr := range pending {
			if greet(addr, addr == s.TLSAddr(), s.Cert) != nil {
				still = append(still, addr)
			}
		}
		if pending = still; len(pending) == 0 {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("mailutils: pop3d exited at start: %s", s.LogTail())
		case <-ctx.Done():
			return fmt.Errorf("mailutils: pop3d did not answer on %s: %s", strings.Join(pending, ", "), s.LogTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// greet connects to addr, reads the greeting and quits.
func greet(addr string, useTLS bool, cert *pop3test.Cert) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	if useTLS {
		conn = tls.Client(conn, &tls.Config{ServerName: "localhost", RootCAs: cert.Pool(), MinVersion: tls.VersionTLS12})
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(conn)
	for _, send := range []string{"", "QUIT\r\n"} {
		if _, err := io.WriteString(conn, send); err != nil {
			return err
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+OK") {
			return fmt.Errorf("%q", line)
		}
	}
	return nil
}

// PlainAddr is the host:port of the POP3 listener that offers STLS.
func (s *Server) PlainAddr() string { return "127.0.0.1:" + strconv.Itoa(s.PlainPort) }

// TLSAddr is the host:port of the POP3S listener.
func (s *Server) TLSAddr() string { return "127.0.0.1:" + strconv.Itoa(s.TLSPort) }

// NoTLSAddr is the host:port of the POP3 listener without TLS.
func (s *Server) NoTLSAddr() string { return "127.0.0.1:" + strconv.Itoa(s.NoTLSPort) }

// Log returns pop3d's whole log (the master's and its sessions').
func (s *Server) Log() string {
	data, _ := os.ReadFile(s.logPath())
	return string(data)
}

// LogTail returns the end of pop3d's log, for error messages.
func (s *Server) LogTail() string {
	data, _ := os.ReadFile(s.logPath())
	if len(data) > 3000 {
		data = data[len(data)-3000:]
	}
	return "pop3d.log: " + string(data)
}

// Stop stops pop3d and the session processes it forked (SIGTERM to its
// process group, SIGKILL after 10 seconds), waits for them, and removes
// the instance's directory. Stopping twice is harmless.
//
// The whole group, because a session process inherits the listening
// sockets: one still talking to a client would otherwise keep the ports
// accepting connections after the master is gone.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			pgid := s.cmd.Process.Pid
			syscall.Kill(-pgid, syscall.SIGTERM)
			select {
			case <-s.exited:
			case <-time.After(10 * time.Second):
				syscall.Kill(-pgid, syscall.SIGKILL)
				<-s.exited
			}
			// Sessions that outlived the master.
			syscall.Kill(-pgid, syscall.SIGKILL)
			for deadline := time.Now().Add(5 * time.Second); groupAlive(pgid) && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
		}
		os.RemoveAll(s.Dir)
	})
}

// groupAlive reports whether a process of group pgid is still running:
// one that has exited but waits to be reaped (a zombie, as orphaned
// sessions may stay for a while under some init processes) holds no
// sockets and does not count.
func groupAlive(pgid int) bool {
	if syscall.Kill(-pgid, 0) != nil {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false // not Linux: the SIGKILL has to do
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold anything.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

// Login is the name a user logs in with: name@Domain.
func (s *Server) Login(name string) string { return name + "@" + s.Domain }

// Home is a user's home directory on the server side.
func (s *Server) Home(name string) string { return filepath.Join(s.mailRoot, name) }

// Mailbox is the path of a user's mbox, HOME/INBOX.
func (s *Server) Mailbox(name string) string { return filepath.Join(s.Home(name), "INBOX") }

// AddUser adds a virtual user with a password, with an empty mbox, and
// returns once pop3d lets the user log in with it.
func (s *Server) AddUser(name, password string) error {
	if name == "" || strings.ContainsAny(name, ":@/\n\r\t \x00") || name[0] == '.' {
		return fmt.Errorf("mailutils: bad user name %q", name)
	}
	if password == "" || strings.ContainsAny(password, "\r\n\x00") {
		return errors.New("mailutils: the password may not be empty or hold line breaks")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[name] {
		return fmt.Errorf("mailutils: user %s exists", name)
	}
	home := s.Home(name)
	if err := os.Mkdir(home, 0o700); err != nil {
		return err
	}
	if err := os.Chown(home, s.uid, s.gid); err != nil {
		return err
	}
	if err := s.createMailbox(name); err != nil {
		return err
	}
	line := fmt.Sprintf("%s:%s:%d:%d:popfetch test user:%s:/bin/false\n",
		name, SHA512Crypt(password, NewSalt()), s.uid, s.gid, home)
	f, err := os.OpenFile(s.passwdFile(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	s.users[name] = true
	// pop3d reads the passwd file at each login: no wait is needed, but
	// check that the recipe still works on this machine.
	if err := s.checkLogin(s.Login(name), password); err != nil {
		return fmt.Errorf("mailutils: new user %s cannot log in: %w\n%s", name, err, s.LogTail())
	}
	return nil
}

// checkLogin logs in on the listener without TLS and quits.
func (s *Server) checkLogin(login, password string) error {
	conn, err := net.DialTimeout("tcp", s.NoTLSAddr(), 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	expectOK := func(what string) error {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !strings.HasPrefix(line, "+OK") {
			return fmt.Errorf("%s: %q", what, strings.TrimSpace(line))
		}
		return nil
	}
	if err := expectOK("greeting"); err != nil {
		return err
	}
	for _, c := range []struct{ cmd, what string }{{"USER " + login, "USER"}, {"PASS " + password, "PASS"}, {"QUIT", "QUIT"}} {
		if _, err := io.WriteString(conn, c.cmd+"\r\n"); err != nil {
			return err
		}
		if err := expectOK(c.what); err != nil {
			return err
		}
	}
	return nil
}

// createMailbox creates the user's empty mbox, mode 600, owned by the
// mail user.
func (s *Server) createMailbox(name string) error {
	path := s.Mailbox(name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chown(path, s.uid, s.gid)
}

// envelopeSender is the address on the From_ lines Deliver writes.
const envelopeSender = "sender@example.com"

// Deliver appends messages (LF line endings) to the user's mbox, as a
// local delivery agent would: each after a "From " line, with mboxrd
// quoting (a '>' before every line that starts with ">*From "), a line
// break added to a message that lacks one at its end, and an empty line
// after each. It holds the mbox's dot-lock meanwhile, as pop3d does for
// a session.
func (s *Server) Deliver(name string, msgs ...[]byte) error {
	unlock, err := s.lock(name)
	if err != nil {
		return err
	}
	defer unlock()
	path := s.Mailbox(name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 64<<10)
	// The mbox should end with the empty line after its last message;
	// pop3d writes it when it rewrites the file, but make sure.
	if err := separate(f, w); err != nil {
		f.Close()
		return err
	}
	for _, m := range msgs {
		writeMbox(w, m, time.Now())
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// separate writes the line breaks the end of f lacks before another
// message: an mbox ends with an empty line.
func separate(f *os.File, w io.Writer) error {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	tail := make([]byte, min(fi.Size(), 2))
	if _, err := f.ReadAt(tail, fi.Size()-int64(len(tail))); err != nil {
		return err
	}
	switch {
	case bytes.HasSuffix(tail, []byte("\n\n")) || (fi.Size() == 1 && tail[0] == '\n'):
	case bytes.HasSuffix(tail, []byte("\n")):
		_, err = io.WriteString(w, "\n")
	default:
		_, err = io.WriteString(w, "\n\n")
	}
	return err
}

// writeMbox writes one message in mboxrd form.
func writeMbox(w *bufio.Writer, m []byte, now time.Time) {
	fmt.Fprintf(w, "From %s %s\n", envelopeSender, now.UTC().Format("Mon Jan _2 15:04:05 2006"))
	for len(m) > 0 {
		line := m
		if i := bytes.IndexByte(m, '\n'); i >= 0 {
			line = m[:i+1]
		}
		m = m[len(line):]
		if bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From ")) {
			w.WriteByte('>')
		}
		w.Write(line)
		if line[len(line)-1] != '\n' {
			w.WriteByte('\n')
		}
	}
	w.WriteByte('\n')
}

// lock takes the mbox's dot-lock, HOME/INBOX.lock, the way Mailutils
// does (a file that exists while someone holds the lock, holding the
// holder's pid), waiting up to 30 seconds for a session to release it.
func (s *Server) lock(name string) (unlock func(), err error) {
	path := s.Mailbox(name) + ".lock"
	deadline := time.Now().Add(30 * time.Second)
	for {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%d\n", os.Getpid())
			f.Close()
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("mailutils: %s is still locked after 30s", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Count returns how many messages the user's mbox holds, read under its
// dot-lock: the "From " lines that start the file or follow an empty line
// (every "From " line inside a message is quoted).
func (s *Server) Count(name string) (int, error) {
	unlock, err := s.lock(name)
	if err != nil {
		return 0, err
	}
	defer unlock()
	f, err := os.Open(s.Mailbox(name))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	n, prevEmpty, first := 0, true, true
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			if first || prevEmpty {
				if bytes.HasPrefix(line, []byte("From ")) {
					n++
				}
			}
			// A line longer than the buffer arrives in pieces: only the
			// first piece of a line can start one.
			first = false
			prevEmpty = len(line) == 1 && line[0] == '\n'
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.ReadSlice('\n')
				prevEmpty = false
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
