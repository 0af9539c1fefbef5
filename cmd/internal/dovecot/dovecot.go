// Package dovecot starts a private Dovecot POP3 server on loopback ports
// for end-to-end tests, benchmarks and the demo.
//
// The instance has its own configuration, run, state and mail directories
// under one temporary directory, a self-signed certificate for 127.0.0.1
// and localhost, users in a passwd-file (PLAIN passwords, so that every
// SASL mechanism can be tested), and Maildirs owned by the unprivileged
// "nobody" user. Dovecot's master must start as root to switch to that
// user: Start returns ErrNotRoot otherwise.
package dovecot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/popfetch/popfetch/cmd/internal/testhost"
	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// ErrNotInstalled is returned by Start when the dovecot binary is missing.
var ErrNotInstalled = errors.New("dovecot is not installed (apt-get install dovecot-core dovecot-pop3d)")

// ErrNotRoot is returned by Start when not running as root.
var ErrNotRoot = errors.New("a private dovecot needs root to switch to the mail user")

// Server is a running private Dovecot.
type Server struct {
	Dir       string         // everything lives below it
	PlainPort int            // POP3 with STLS
	TLSPort   int            // POP3S
	Cert      *pop3test.Cert // the server's certificate; CertFile holds it as PEM
	CertFile  string
	// LMTPSocket is the LMTP service's socket, if Options.LMTP.
	LMTPSocket string
	// IMAPPort (IMAP with STARTTLS) and IMAPSPort (implicit TLS) are
	// the IMAP listeners, if Options.IMAP.
	IMAPPort, IMAPSPort int
	cmd                 *exec.Cmd
	mailRoot            string // the users' Maildirs are below it
	uid, gid            int
	seq                 atomic.Uint64
	exited              chan struct{}
}

// Binary returns the path of the dovecot binary, or ErrNotInstalled.
func Binary() (string, error) {
	for _, p := range []string{"dovecot", "/usr/sbin/dovecot"} {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", ErrNotInstalled
}

// lmtpBinary is Dovecot's LMTP service, from dovecot-lmtpd.
const lmtpBinary = "/usr/lib/dovecot/lmtp"

// imapBinary is Dovecot's IMAP service, from dovecot-imapd.
const imapBinary = "/usr/lib/dovecot/imap"

// Options adjust Start.
type Options struct {
	// MailRoot, if set, is a directory to keep the users' mail in instead
	// of the instance's own directory: a benchmark puts it on another file
	// system (a tmpfs) so that the server's work on its disk does not
	// slow the client's, as it would not if the server were remote.
	MailRoot string
	// LMTP also starts Dovecot's LMTP service on the Unix socket
	// LMTPSocket (dovecot-lmtpd must be installed).
	LMTP bool
	// Quota, with LMTP or IMAP, limits each user's mail to this many
	// octets; LMTP refuses a message over it temporarily (452 4.2.2),
	// IMAP's APPEND with NO [OVERQUOTA].
	Quota int64
	// IMAP also serves IMAP (dovecot-imapd must be installed) on
	// IMAPPort and IMAPSPort, to the same users and their mail.
	IMAP bool
	// OAuth2Introspection, if set, is the URL of an OAuth 2.0 token
	// introspection endpoint (RFC 7662, POST). The instance then offers
	// XOAUTH2 and OAUTHBEARER and lets a token in if the endpoint calls it
	// active and names the user logging in as its owner.
	OAuth2Introspection string
	// ClientCA, if set, is a PEM certificate. The instance then asks TLS
	// clients for a certificate, verifies it against this one, and
	// offers EXTERNAL, which logs in as the certificate's common name.
	ClientCA []byte
	// HighPerformance runs Dovecot the way a server for many short
	// sessions is run: login and pop3 processes that serve session after
	// session instead of a fork per connection (service_count = 0), which
	// costs Dovecot about 26 ms of CPU a session on a small machine. A
	// benchmark of the client polling thousands of accounts needs it, or
	// it measures Dovecot.
	HighPerformance bool
	// LoginProcesses, with HighPerformance, is how many pop3-login
	// processes serve the connections (default: one a core, at least
	// two). Each has a TLS session ticket key of its own, so a client
	// resumes only a session the process that takes its connection
	// made: with one, every resumption can succeed.
	LoginProcesses int
}

// Start starts a private instance and waits until it answers.
func Start(ctx context.Context) (*Server, error) {
	return StartWith(ctx, Options{})
}

// StartWith is Start with options.
func StartWith(ctx context.Context, opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	uid, gid, err := testhost.MailUser()
	if err != nil {
		return nil, err
	}
	return testhost.Start(func() (*Server, error) { return start(ctx, bin, uid, gid, opts) })
}

func start(ctx context.Context, bin string, uid, gid int, opts Options) (*Server, error) {
	dir, err := os.MkdirTemp("", "popfetch-dovecot-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, uid: uid, gid: gid, exited: make(chan struct{}), mailRoot: filepath.Join(dir, "mail")}
	if opts.MailRoot != "" {
		if s.mailRoot, err = os.MkdirTemp(opts.MailRoot, "popfetch-dovecot-mail-"); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		os.Chmod(s.mailRoot, 0o755)
	}
	if err := s.setup(opts); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	conf := filepath.Join(dir, "dovecot.conf")
	s.cmd = exec.Command(bin, "-F", "-c", conf)
	// The master keeps its standard streams for its whole life: give it a
	// file, never a pipe someone has to drain.
	logf, err := os.Create(filepath.Join(dir, "startup.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("dovecot: start: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	if err := s.waitReady(ctx); err != nil {
		log := s.LogTail()
		s.Stop()
		if strings.Contains(log, "Address already in use") {
			return nil, fmt.Errorf("dovecot: %w: %v", testhost.ErrPortTaken, err)
		}
		return nil, err
	}
	return s, nil
}

func (s *Server) setup(opts Options) error {
	ports, err := testhost.FreePorts(4)
	if err != nil {
		return err
	}
	s.PlainPort, s.TLSPort = ports[0], ports[1]
	if opts.IMAP {
		s.IMAPPort, s.IMAPSPort = ports[2], ports[3]
	}
	// The mail processes run as the mail user and must reach the mail dir.
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		return err
	}
	for _, d := range []string{"run", "state"} {
		if err := os.Mkdir(filepath.Join(s.Dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(s.mailRoot, 0o755); err != nil {
		return err
	}
	if err := os.Chown(s.mailRoot, s.uid, s.gid); err != nil {
		return err
	}
	if s.Cert, err = pop3test.NewCert(24*time.Hour, "127.0.0.1", "localhost"); err != nil {
		return err
	}
	s.CertFile = filepath.Join(s.Dir, "cert.pem")
	if err := os.WriteFile(s.CertFile, s.Cert.CertPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "key.pem"), s.Cert.KeyPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "passwd"), nil, 0o644); err != nil {
		return err
	}
	hpLogin, hpServices := highPerformance(opts)
	conf := fmt.Sprintf(`# A private instance for popfetch's tests.
instance_name = popfetch-%d
base_dir = %[2]s/run
state_dir = %[2]s/state
log_path = %[2]s/dovecot.log
info_log_path = %[2]s/dovecot.log
listen = 127.0.0.1
protocols = pop3
ssl = yes
ssl_cert = <%[2]s/cert.pem
ssl_key = <%[2]s/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256 apop
passdb {
  driver = passwd-file
  args = scheme=PLAIN %[2]s/passwd
}
userdb {
  driver = static
  args = uid=%[3]d gid=%[4]d home=%[7]s/%%u allow_all_users=yes
}
first_valid_uid = %[3]d
first_valid_gid = %[4]d
mail_location = maildir:%[7]s/%%u
mail_max_userip_connections = 100
pop3_uidl_format = %%08Xu%%08Xv
pop3_logout_format = top=%%t/%%p, retr=%%r/%%b, del=%%d/%%m, size=%%s
service pop3-login {
%[9]s  inet_listener pop3 {
    port = %[5]d
  }
  inet_listener pop3s {
    port = %[6]d
    ssl = yes
  }
}
%[8]sservice imap-login {
  inet_listener imap {
    port = %[10]d
  }
  inet_listener imaps {
    port = %[11]d
    ssl = yes
  }
}
`, os.Getpid(), s.Dir, s.uid, s.gid, s.PlainPort, s.TLSPort, s.mailRoot, hpServices, hpLogin, s.IMAPPort, s.IMAPSPort)
	if opts.IMAP {
		if _, err := os.Stat(imapBinary); err != nil {
			return fmt.Errorf("%w: %s (apt-get install dovecot-imapd)", ErrNotInstalled, imapBinary)
		}
		conf = strings.Replace(conf, "protocols = pop3\n", "protocols = pop3 imap\n", 1)
		if opts.Quota > 0 {
			conf += fmt.Sprintf(`protocol imap {
  mail_plugins = $mail_plugins quota imap_quota
}
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=%dB
}
`, opts.Quota)
		}
	}
	if opts.LMTP {
		if _, err := os.Stat(lmtpBinary); err != nil {
			return fmt.Errorf("%w: %s (apt-get install dovecot-lmtpd)", ErrNotInstalled, lmtpBinary)
		}
		s.LMTPSocket = filepath.Join(s.Dir, "run", "lmtp")
		conf = strings.Replace(conf, "protocols = pop3", "protocols = pop3 lmtp", 1)
		conf += `postmaster_address = postmaster@popfetch.test
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
`
		if opts.Quota > 0 && !opts.IMAP {
			conf += fmt.Sprintf(`quota_full_tempfail = yes
protocol lmtp {
  mail_plugins = $mail_plugins quota
}
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=%dB
}
`, opts.Quota)
		}
	}
	if conf, err = s.authOptions(conf, opts); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Dir, "dovecot.conf"), []byte(conf), 0o644)
}

// highPerformance returns the settings for Options.HighPerformance, those
// of the pop3-login service and the other services' (see Dovecot's
// "High-performance mode" of login processes): login processes that each
// serve many connections, as many as the cores, and pop3 processes that
// stay for the next session. The latter needs every user on one uid, as
// here.
func highPerformance(opts Options) (login, services string) {
	if !opts.HighPerformance {
		return "", ""
	}
	login = fmt.Sprintf("  service_count = 0\n  process_min_avail = %d\n  client_limit = 1000\n  vsz_limit = 1G\n",
		max(runtime.NumCPU(), 2))
	if n := opts.LoginProcesses; n > 0 {
		login = fmt.Sprintf("  service_count = 0\n  process_min_avail = %d\n  process_limit = %[1]d\n  client_limit = 1000\n  vsz_limit = 1G\n", n)
	}
	services = `service pop3 {
  service_count = 0
  client_limit = 1
  process_min_avail = 4
  process_limit = 256
}
service auth {
  client_limit = 2000
}
`
	return login, services
}

// authOptions adds the mechanisms that need more than the passwd-file:
// OAuth2 tokens and client certificates. Their passdbs come before the
// passwd-file and serve only their own mechanisms; a token or certificate
// they refuse falls through to the passwd-file, which refuses it too.
func (s *Server) authOptions(conf string, opts Options) (string, error) {
	var mechs, passdbs string
	if opts.OAuth2Introspection != "" {
		ext := filepath.Join(s.Dir, "oauth2.conf.ext")
		text := fmt.Sprintf("introspection_mode = post\nintrospection_url = %s\nusername_attribute = username\nactive_attribute = active\nactive_value = true\n",
			opts.OAuth2Introspection)
		if err := os.WriteFile(ext, []byte(text), 0o644); err != nil {
			return "", err
		}
		mechs += " xoauth2 oauthbearer"
		passdbs += fmt.Sprintf("passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = %s\n}\n", ext)
	}
	if opts.ClientCA != nil {
		ca := filepath.Join(s.Dir, "client-ca.pem")
		if err := os.WriteFile(ca, opts.ClientCA, 0o644); err != nil {
			return "", err
		}
		mechs += " external"
		passdbs += "passdb {\n  driver = static\n  args = nopassword=y\n  mechanisms = external\n}\n"
		conf += fmt.Sprintf("ssl_ca = <%s\nssl_verify_client_cert = yes\nssl_require_crl = no\nauth_ssl_username_from_cert = yes\nssl_cert_username_field = commonName\n", ca)
	}
	if mechs == "" {
		return conf, nil
	}
	// Log why a login failed, for the tests to check.
	conf += "auth_verbose = yes\n"
	conf = strings.Replace(conf, "scram-sha-256 apop\n", "scram-sha-256 apop"+mechs+"\n", 1)
	return strings.Replace(conf, "passdb {\n  driver = passwd-file", passdbs+"passdb {\n  driver = passwd-file", 1), nil
}

// waitReady waits until the plain port sends a greeting.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("dovecot exited at start: %s", s.LogTail())
		case <-ctx.Done():
			return fmt.Errorf("dovecot did not answer on port %d: %s", s.PlainPort, s.LogTail())
		case <-time.After(50 * time.Millisecond):
		}
		conn, err := net.DialTimeout("tcp", s.PlainAddr(), time.Second)
		if err != nil {
			continue
		}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err == nil && strings.HasPrefix(line, "+OK") {
			return nil
		}
	}
}

// Pid returns the process ID of the instance's master process.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// PlainAddr is the host:port of the POP3 (STLS) listener.
func (s *Server) PlainAddr() string { return "127.0.0.1:" + strconv.Itoa(s.PlainPort) }

// IMAPAddr is the host:port of the IMAP (STARTTLS) listener, if
// Options.IMAP.
func (s *Server) IMAPAddr() string { return "127.0.0.1:" + strconv.Itoa(s.IMAPPort) }

// IMAPSAddr is the host:port of the IMAPS listener, if Options.IMAP.
func (s *Server) IMAPSAddr() string { return "127.0.0.1:" + strconv.Itoa(s.IMAPSPort) }

// TLSAddr is the host:port of the POP3S listener.
func (s *Server) TLSAddr() string { return "127.0.0.1:" + strconv.Itoa(s.TLSPort) }

// LogTail returns the end of Dovecot's logs, for error messages.
func (s *Server) LogTail() string {
	var out []string
	for _, f := range []string{"startup.log", "dovecot.log"} {
		data, _ := os.ReadFile(filepath.Join(s.Dir, f))
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		if len(data) > 0 {
			out = append(out, f+": "+string(data))
		}
	}
	return strings.Join(out, "\n")
}

// Log returns Dovecot's whole log.
func (s *Server) Log() string {
	data, _ := os.ReadFile(filepath.Join(s.Dir, "dovecot.log"))
	return string(data)
}

// Stop stops the instance and removes its directory.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
	}
	os.RemoveAll(s.Dir)
	os.RemoveAll(s.mailRoot)
}

// AddUser adds a user with a password and returns once Dovecot accepts it.
func (s *Server) AddUser(name, password string) error {
	return s.AddUsers(map[string]string{name: password})
}

// AddUsers adds users (name to password) and returns once Dovecot accepts
// them all. Dovecot's passwd-file driver checks the file at most once per
// second, and a failed login makes it delay the next ones from the same
// address (its auth penalty), so AddUsers waits into the next second
// instead of retrying, then checks each with one login.
func (s *Server) AddUsers(users map[string]string) error {
	stored := make(map[string]string, len(users))
	for name, password := range users {
		stored[name] = "{PLAIN}" + password
	}
	if err := s.appendUsers(stored); err != nil {
		return err
	}
	for name, password := range users {
		if err := s.checkUser(name, password); err != nil {
			return err
		}
	}
	return nil
}

// AddManyUsers adds the users names, all with one password, as AddUsers
// does, but checks only the first with a login: thousands of logins
// would take minutes. With scram the passwd-file holds SCRAM-SHA-256
// credentials (one salt for all), as a server that offers SCRAM stores
// them: otherwise Dovecot, which keeps the password in the clear, makes
// up a new salt for every SCRAM login, and the client must run PBKDF2
// every time.
func (s *Server) AddManyUsers(names []string, password string, scram bool) error {
	stored := "{PLAIN}" + password
	if scram {
		stored = scramSHA256(password)
	}
	users := make(map[string]string, len(names))
	for _, n := range names {
		users[n] = stored
	}
	if err := s.appendUsers(users); err != nil || len(names) == 0 {
		return err
	}
	return s.checkUser(names[0], password)
}

// scramSHA256 returns Dovecot's SCRAM-SHA-256 password scheme for
// password: the iteration count, salt, StoredKey and ServerKey of RFC
// 5802, comma-separated, in base64.
func scramSHA256(password string) string {
	const iter = 4096
	salt := make([]byte, 16)
	rand.Read(salt)
	salted, _ := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("{SCRAM-SHA-256}%d,%s,%s,%s", iter, b64(salt), b64(stored[:]), b64(mac(salted, "Server Key")))
}

// appendUsers adds users (name to stored password, with its scheme) to
// the passwd-file and waits until Dovecot may have read it again.
func (s *Server) appendUsers(users map[string]string) error {
	var lines strings.Builder
	for name, stored := range users {
		if strings.ContainsAny(name+stored, ":\n") {
			return errors.New("dovecot: user name and password may not contain ':' or newlines")
		}
		fmt.Fprintf(&lines, "%s:%s::::::\n", name, stored)
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, "passwd"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(lines.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + 20*time.Millisecond).Sub(now))
	return nil
}

// checkUser logs in as a new user once.
func (s *Server) checkUser(name, password string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Index(ctx, name, password); err != nil {
		return fmt.Errorf("dovecot: new user %s cannot log in: %w", name, err)
	}
	return nil
}

// Maildir returns the path of a user's Maildir on the server side.
func (s *Server) Maildir(user string) string { return filepath.Join(s.mailRoot, user) }

// Deliver puts messages (LF line endings) into the user's Maildir, the
// way a local delivery agent would, owned by the mail user. Call Index
// afterwards so that Dovecot's indexing is not part of a timed run.
func (s *Server) Deliver(user string, msgs ...[]byte) error {
	for _, m := range msgs {
		if err := s.DeliverFrom(user, bytes.NewReader(m)); err != nil {
			return err
		}
	}
	return nil
}

// DeliverFrom is Deliver for one message read from r, which is streamed
// to the file: a message of any size costs no memory.
func (s *Server) DeliverFrom(user string, r io.Reader) error {
	root := s.Maildir(user)
	for _, d := range []string{root, root + "/new", root + "/cur", root + "/tmp"} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if err := os.Chown(d, s.uid, s.gid); err != nil {
			return err
		}
	}
	host, _ := os.Hostname()
	// Q zero-padded: Dovecot numbers new mail by its file name, and Q10
	// sorts before Q2 unpadded.
	name := fmt.Sprintf("%d.P%dQ%09d.%s", time.Now().Unix(), os.Getpid(), s.seq.Add(1), host)
	tmp := filepath.Join(root, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chown(tmp, s.uid, s.gid)
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(root, "new", name))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// Count returns how many messages the user's Maildir holds on the server.
func (s *Server) Count(user string) int {
	n := 0
	for _, d := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(s.Maildir(user), d))
		n += len(entries)
	}
	return n
}

// Index logs in once and asks for STAT, so that Dovecot indexes newly
// delivered mail before a timed run. It returns the message count.
func (s *Server) Index(ctx context.Context, user, password string) (int, error) {
	c, err := pop3.Dial(ctx, s.PlainAddr(), &pop3.Options{Timeout: time.Minute})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.User(ctx, user); err != nil {
		return 0, err
	}
	if err := c.Pass(ctx, password); err != nil {
		return 0, err
	}
	n, _, err := c.Stat(ctx)
	if err != nil {
		return 0, err
	}
	return n, c.Quit(ctx)
}

// Message returns a generated message of about size octets (at least its
// header), read as a stream: From, To, Message-ID <id>, Subject, Date, then
// lines of text, ending with a line break. The same arguments give the
// same bytes but for the Date field.
func Message(id, subject string, size int64) io.Reader {
	header := fmt.Sprintf("From: Test Sender <sender@example.com>\nTo: user@example.com\nMessage-ID: <%s>\nSubject: %s\nDate: %s\n\n",
		id, subject, time.Now().Format(time.RFC1123Z))
	const line = "The quick brown fox jumps over the lazy dog. 0123456789 ABCDEFGHIJ\n"
	body := max(size-int64(len(header)), 1)
	tail := ""
	if rest := body % int64(len(line)); rest > 0 {
		tail = strings.Repeat("x", int(rest-1)) + "\n"
	}
	full := body / int64(len(line)) * int64(len(line))
	return io.MultiReader(strings.NewReader(header), io.LimitReader(repeatReader(line), full), strings.NewReader(tail))
}

// repeatReader repeats its text forever.
type repeatReader string

func (r repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], r)
	}
	return n, nil
}
