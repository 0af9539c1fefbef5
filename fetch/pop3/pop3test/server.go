// Package pop3test is an in-process, scriptable POP3 server for tests.
//
// It serves one mailbox that persists across sessions: messages deleted in
// a session are removed only when that session ends with QUIT, as RFC 1939
// requires, and a second session while one holds the mailbox gets
// -ERR [IN-USE]. Capabilities (UIDL, TOP, PIPELINING, STLS) can be switched
// off or on, and Faults make it misbehave on demand: drop the connection at
// a command or part-way through a reply, answer with a chosen line, stall,
// or send garbage.
package pop3test

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Message is a message in the test mailbox.
type Message struct {
	UID  string
	Data []byte // LF or CRLF line endings; sent with CRLF
	// ListSize, if not zero, is the size LIST and RETR report instead of
	// the real one, as a server whose sizes lie.
	ListSize int
}

// listSize is the size the server reports for m.
func (m *Message) listSize() int {
	if m.ListSize != 0 {
		return m.ListSize
	}
	return wireSize(m.Data)
}

// Action is what a Fault does.
type Action int

const (
	// Drop closes the connection instead of replying.
	Drop Action = iota + 1
	// DropAfter sends the first Bytes octets of the reply (status line and
	// any multi-line body), then closes the connection.
	DropAfter
	// Reply sends Reply as the whole answer instead of the normal reply.
	Reply
	// Stall waits for Delay (or until the server is closed), then replies
	// normally.
	Stall
	// Garbage answers with a line that is not a POP3 status line.
	Garbage
	// Mute sends Reply (if not empty), then answers nothing more: it reads
	// and discards whatever the client sends until the client hangs up or
	// the server is closed. It is a server that hangs, or a handshake
	// that never completes.
	Mute
	// Dribble sends the first Bytes octets of the normal reply at once and
	// the rest one octet at a time, Delay apart, as a server does that
	// holds a client just inside its idle timeout.
	Dribble
)

// Fault makes the server misbehave at a command.
type Fault struct {
	// Command is the command verb (upper case) at which the fault fires,
	// or "GREETING" for the greeting.
	Command string
	// Nth is the occurrence of Command, counted from 1 over the life of
	// the server, at which the fault fires once. Zero fires at every
	// occurrence.
	Nth int
	// Action is what happens.
	Action Action
	// Bytes is the number of octets DropAfter and Dribble send first.
	Bytes int
	// Reply is the answer sent by Reply, without CRLF.
	Reply string
	// Delay is how long Stall waits, and the gap between Dribble's octets.
	Delay time.Duration
}

// Config sets up a Server.
type Config struct {
	User     string
	Password string

	NoCapa     bool // answer -ERR to CAPA
	NoUIDL     bool // answer -ERR to UIDL and leave it out of CAPA
	NoTop      bool // answer -ERR to TOP and leave it out of CAPA
	Pipelining bool // advertise PIPELINING
	APOP       bool // put an APOP timestamp in the greeting and accept APOP
	LoginDelay int  // if > 0, advertise LOGIN-DELAY with this many seconds

	// STLS, if set, is offered as STLS with this server configuration.
	STLS *tls.Config
	// STLSInject, with STLS, sends this plaintext right behind the +OK to
	// STLS, the attack that RFC 2595 clients must detect.
	STLSInject string
	// TLS, if set, makes the listener speak TLS from the start (POP3S).
	TLS *tls.Config

	// Greeting, if set, replaces the greeting line (APOP then uses
	// whatever timestamp it holds, if any).
	Greeting string

	// SASL lists the SASL mechanisms advertised and accepted by AUTH
	// (RFC 5034): PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256,
	// XOAUTH2, OAUTHBEARER and EXTERNAL (which needs a client certificate
	// on a TLS connection).
	SASL []string
	// Token is the OAuth bearer token XOAUTH2 and OAUTHBEARER accept.
	Token string
	// ForgeSCRAM makes SCRAM's last message carry a wrong server
	// signature, as a server that does not know the password would.
	ForgeSCRAM bool
	// NoUser leaves USER out of CAPA and refuses USER and PASS.
	NoUser bool
	// UTF8 advertises UTF8 (RFC 6856) and accepts the UTF8 command.
	UTF8 bool

	// Quirks make the server behave as real servers do that differ from
	// the RFCs' happy path (see Quirks).
	Quirks Quirks

	// Hook, if set, is called with each command line as it arrives,
	// before the server acts on it (in the session's goroutine).
	Hook func(line string)
}

// Quirks are behaviours of real POP3 servers that a client must survive.
// Each names the servers known to behave so.
type Quirks struct {
	// DiscardAfterLogin drops whatever the client sent behind a login
	// command that succeeds (PASS, APOP, AUTH), as a server does whose
	// login process hands the connection to another process (Courier's
	// pop3login execs pop3d): the new process never sees those bytes.
	// Such servers may still advertise PIPELINING, and honour it once
	// logged in.
	DiscardAfterLogin bool
	// APOPNoSecret puts an APOP timestamp in the greeting but refuses
	// every APOP with a -ERR without response code, as servers do that
	// always send the timestamp while their APOP secrets live in a
	// separate, usually empty, database (qpopper, Courier).
	APOPNoSecret bool
	// HideUIDL leaves UIDL out of CAPA although the command works.
	HideUIDL bool
	// XUIDL adds an "X-UIDL: <uid>" field at the top of every message
	// RETR and TOP send, without counting it in the sizes LIST reports,
	// as GNU Mailutils' pop3d does once it has seen a message.
	XUIDL bool
	// Expire advertises "EXPIRE <Expire>" in CAPA (RFC 2449 section
	// 6.7), e.g. "0" or "NEVER"; "0 USER" before login, with
	// ExpireAfterLogin given by CAPA after it. With an effective value
	// of 0 the server deletes every retrieved message at QUIT.
	Expire           string
	ExpireAfterLogin string
	// VanishRetrieved removes every retrieved message from the mailbox
	// when the session ends, with or without QUIT or DELE, as some
	// hosted services do (Gmail's POP in its default mode).
	VanishRetrieved bool
	// EnforceLoginDelay refuses, with -ERR [LOGIN-DELAY], a login sooner
	// than LoginDelay seconds after the last successful one.
	EnforceLoginDelay bool
	// LockedReply, if set, is the whole reply to a login while another
	// session holds the mailbox, instead of "-ERR [IN-USE] ...": servers
	// without RESP-CODES say it in words.
	LockedReply string
	// HangUpOnUnknown closes the connection at a command the server does
	// not know, instead of answering -ERR (some appliances and Gmail
	// for commands it was not told of).
	HangUpOnUnknown bool
	// HangUpAfterFailedLogin closes the connection after the -ERR to a
	// login (PASS, APOP, AUTH), as many servers do.
	HangUpAfterFailedLogin bool
	// NoUIDLOne answers -ERR to UIDL with a message number while the
	// listing works, as a server that implements only the listing.
	NoUIDLOne bool
	// SortedByUID numbers the messages at login in the order of their
	// UIDs instead of their arrival, as a server does that orders its
	// maildrop by something other than arrival: a new message may then
	// come before old ones.
	SortedByUID bool
	// SplitLogin answers a login the way Dovecot does: USER's +OK goes
	// out at once, and the reply to PASS a moment later (LoginPause,
	// default 2 ms: Dovecot's pop3-login authenticates and hands the
	// connection to a pop3 process, which says "+OK Logged in."), in a
	// write of its own, with Nagle's algorithm on (as Dovecot's
	// sockets). The second small segment then waits until the client
	// acknowledges the first: a client that pipelined USER and PASS and
	// lets its kernel delay that ACK waits 40 ms for every login.
	SplitLogin bool
	// LoginPause is how long SplitLogin waits before the reply to PASS
	// (zero: 2 ms).
	LoginPause time.Duration
}

// Server is a running test server.
type Server struct {
	cfg      Config
	listener net.Listener
	closed   chan struct{}
	wg       sync.WaitGroup

	mu         sync.Mutex
	mailbox    []*Message
	locked     bool
	faults     []Fault
	counts     map[string]int // occurrences of each command so far
	commands   []string       // every command line received, in order
	sessions   int
	mechanisms []string // the SASL mechanism of each successful AUTH
	utf8       int      // UTF8 commands accepted
	flights    int      // client flights: commands that arrived after the server had answered all before them
	deepest    int      // the most commands in one flight
	lastLogin  time.Time
	discarded  int // octets dropped by Quirks.DiscardAfterLogin
}

// NewServer starts a server on 127.0.0.1 with the given mailbox.
func NewServer(cfg Config, msgs ...Message) (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if cfg.TLS != nil {
		l = tls.NewListener(l, cfg.TLS)
	}
	s := &Server{cfg: cfg, listener: l, closed: make(chan struct{}), counts: map[string]int{}}
	for i := range msgs {
		m := msgs[i]
		s.mailbox = append(s.mailbox, &m)
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Close stops the server and waits for its sessions to end.
func (s *Server) Close() {
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
	s.listener.Close()
	s.wg.Wait()
}

// Add appends messages to the mailbox.
func (s *Server) Add(msgs ...Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range msgs {
		m := msgs[i]
		s.mailbox = append(s.mailbox, &m)
	}
}

// SetMailbox replaces the mailbox, as mail arriving and being deleted by
// other clients between sessions does.
func (s *Server) SetMailbox(msgs ...Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mailbox = nil
	for i := range msgs {
		m := msgs[i]
		s.mailbox = append(s.mailbox, &m)
	}
}

// Messages returns the mailbox as it stands (deletions of sessions that
// ended with QUIT applied).
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.mailbox))
	for i, m := range s.mailbox {
		out[i] = *m
	}
	return out
}

// SetFaults replaces the faults to inject from now on.
func (s *Server) SetFaults(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append([]Fault(nil), faults...)
}

// Commands returns every command line the server has received, in order,
// passwords included (it is a test server).
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

// Count returns how many times the command verb was received.
func (s *Server) Count(verb string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[verb]
}

// Flights returns how many times a client sent commands after the server
// had answered everything before them: the round trips the clients made
// the server wait for. Commands pipelined together count once.
func (s *Server) Flights() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flights
}

// Deepest returns the largest number of commands received in one flight:
// 1 for a client that never pipelines.
func (s *Server) Deepest() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deepest
}

// HoldLock locks the mailbox as a logged-in session would, until the
// returned function is called: logins meanwhile get the in-use reply.
func (s *Server) HoldLock() (release func()) {
	s.mu.Lock()
	s.locked = true
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.locked = false
		s.mu.Unlock()
	}
}

// Locked reports whether a session (or HoldLock) holds the mailbox: a
// session the client closed lets go of it only once the server has seen
// the connection end.
func (s *Server) Locked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.locked
}

// Discarded returns how many octets Quirks.DiscardAfterLogin dropped.
func (s *Server) Discarded() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.discarded
}

// Mechanisms returns the SASL mechanism of each successful AUTH so far.
func (s *Server) Mechanisms() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.mechanisms...)
}

// UTF8Count returns how many UTF8 commands the server accepted.
func (s *Server) UTF8Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.utf8
}

// Sessions returns how many connections the server has accepted.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.listener.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.sessions++
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				select {
				case <-s.closed:
					conn.Close()
				case <-stop:
				}
			}()
			if s.cfg.Quirks.SplitLogin {
				raw := conn
				if tc, ok := conn.(*tls.Conn); ok {
					raw = tc.NetConn() // implicit TLS: the socket below
				}
				if tcp, ok := raw.(*net.TCPConn); ok {
					tcp.SetNoDelay(false) // Nagle's algorithm on (Go turns it off)
				}
			}
			(&session{srv: s, conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn)}).run()
		}()
	}
}

// fault returns the fault that fires at this occurrence of verb, if any.
func (s *Server) fault(verb string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[verb]++
	n := s.counts[verb]
	for i, f := range s.faults {
		if f.Command == verb && (f.Nth == 0 || f.Nth == n) {
			return &s.faults[i]
		}
	}
	return nil
}

type session struct {
	srv       *Server
	conn      net.Conn
	r         *bufio.Reader
	w         *bufio.Writer
	timestamp string
	user      string
	authed    bool
	tls       bool
	msgs      []*Message // the mailbox as locked at login
	deleted   map[int]bool
	retrieved map[int]bool
}

var errHangUp = fmt.Errorf("hang up")

func (ss *session) run() {
	_, ss.tls = ss.conn.(*tls.Conn)
	defer ss.unlock()
	defer ss.vanish()
	greeting := "+OK pop3test ready"
	if ss.srv.cfg.APOP || ss.srv.cfg.Quirks.APOPNoSecret {
		ss.timestamp = fmt.Sprintf("<%d.%d@pop3test>", time.Now().UnixNano(), ss.srv.Sessions())
		greeting += " " + ss.timestamp
	}
	if ss.srv.cfg.Greeting != "" {
		greeting = ss.srv.cfg.Greeting
	}
	if err := ss.reply("GREETING", func() error { return ss.line(greeting) }); err != nil {
		return
	}
	if err := ss.w.Flush(); err != nil {
		return
	}
	idle := true // everything received so far has been answered and flushed
	depth := 0
	for {
		ss.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := ss.r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		ss.srv.mu.Lock()
		ss.srv.commands = append(ss.srv.commands, line)
		if idle {
			ss.srv.flights++
			depth = 0
			idle = false
		}
		depth++
		ss.srv.deepest = max(ss.srv.deepest, depth)
		ss.srv.mu.Unlock()
		if ss.srv.cfg.Hook != nil {
			ss.srv.cfg.Hook(line)
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		if err := ss.reply(verb, func() error { return ss.handle(verb, arg) }); err != nil {
			return
		}
		if ss.srv.cfg.Quirks.HangUpAfterFailedLogin && !ss.authed && (verb == "PASS" || verb == "APOP" || verb == "AUTH") {
			ss.w.Flush()
			return
		}
		if ss.r.Buffered() == 0 {
			if err := ss.w.Flush(); err != nil {
				return
			}
			idle = true
		}
	}
}

// reply runs the normal handler for verb unless a fault fires.
func (ss *session) reply(verb string, normal func() error) error {
	f := ss.srv.fault(verb)
	if f == nil {
		return normal()
	}
	switch f.Action {
	case Drop:
		ss.w.Flush()
		return errHangUp
	case DropAfter:
		ss.w.Flush()
		var buf bytes.Buffer
		ss.w.Reset(&buf)
		normal()
		ss.w.Flush()
		ss.w.Reset(ss.conn)
		data := buf.Bytes()
		if f.Bytes < len(data) {
			data = data[:f.Bytes]
		}
		ss.conn.Write(data)
		return errHangUp
	case Reply:
		return ss.line(f.Reply)
	case Stall:
		ss.w.Flush()
		select {
		case <-time.After(f.Delay):
		case <-ss.srv.closed:
			return errHangUp
		}
		return normal()
	case Garbage:
		return ss.line("\x00garbage \xff\xfe")
	case Dribble:
		ss.w.Flush()
		var buf bytes.Buffer
		ss.w.Reset(&buf)
		err := normal()
		ss.w.Flush()
		ss.w.Reset(ss.conn)
		data := buf.Bytes()
		if n := min(f.Bytes, len(data)); n > 0 {
			if _, err := ss.conn.Write(data[:n]); err != nil {
				return errHangUp
			}
			data = data[n:]
		}
		for _, b := range data {
			select {
			case <-time.After(f.Delay):
			case <-ss.srv.closed:
				return errHangUp
			}
			if _, err := ss.conn.Write([]byte{b}); err != nil {
				return errHangUp
			}
		}
		return err
	case Mute:
		if f.Reply != "" {
			ss.line(f.Reply)
		}
		ss.w.Flush()
		ss.mute()
		return errHangUp
	}
	return normal()
}

// mute discards input until the client hangs up or the server closes.
func (ss *session) mute() {
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ss.srv.closed:
			ss.conn.Close()
		case <-done:
		}
	}()
	ss.conn.SetReadDeadline(time.Time{})
	io.Copy(io.Discard, ss.r)
}

func (ss *session) line(s string) error {
	_, err := ss.w.WriteString(s + "\r\n")
	return err
}

func (ss *session) errf(format string, args ...any) error {
	return ss.line("-ERR " + fmt.Sprintf(format, args...))
}

func (ss *session) handle(verb, arg string) error {
	cfg := &ss.srv.cfg
	switch verb {
	case "CAPA":
		if cfg.NoCapa {
			return ss.unknown("unknown command")
		}
		ss.line("+OK capability list follows")
		caps := []string{"RESP-CODES", "AUTH-RESP-CODE"}
		if !cfg.NoTop {
			caps = append(caps, "TOP")
		}
		if !cfg.NoUIDL && !cfg.Quirks.HideUIDL {
			caps = append(caps, "UIDL")
		}
		if e := cfg.Quirks.Expire; e != "" {
			if ss.authed && cfg.Quirks.ExpireAfterLogin != "" {
				e = cfg.Quirks.ExpireAfterLogin
			}
			caps = append(caps, "EXPIRE "+e)
		}
		if cfg.Pipelining {
			caps = append(caps, "PIPELINING")
		}
		if cfg.LoginDelay > 0 {
			caps = append(caps, "LOGIN-DELAY "+strconv.Itoa(cfg.LoginDelay))
		}
		if cfg.UTF8 {
			caps = append(caps, "UTF8")
		}
		if !ss.authed {
			if !cfg.NoUser {
				caps = append(caps, "USER")
			}
			if len(cfg.SASL) > 0 {
				caps = append(caps, "SASL "+strings.Join(cfg.SASL, " "))
			}
			if cfg.STLS != nil && !ss.tls {
				caps = append(caps, "STLS")
			}
		}
		for _, c := range caps {
			ss.line(c)
		}
		return ss.line(".")
	case "QUIT":
		if ss.authed {
			if ss.expireZero() {
				for n := range ss.retrieved {
					ss.deleted[n] = true
				}
			}
			// UPDATE state: apply the deletions and release the
			// mailbox before answering, as a server must, so that a
			// client that logs in again at once finds it free.
			ss.commit()
			ss.unlock()
		}
		ss.line("+OK bye")
		ss.w.Flush()
		return errHangUp
	case "NOOP":
		return ss.line("+OK")
	}
	if !ss.authed {
		return ss.handleAuth(verb, arg)
	}
	return ss.handleTransaction(verb, arg)
}

// unknown answers a command the server does not know.
func (ss *session) unknown(text string) error {
	if ss.srv.cfg.Quirks.HangUpOnUnknown {
		ss.w.Flush()
		return errHangUp
	}
	return ss.errf("%s", text)
}

// expireZero reports whether the server's effective EXPIRE policy is 0.
func (ss *session) expireZero() bool {
	q := ss.srv.cfg.Quirks
	e := q.Expire
	if q.ExpireAfterLogin != "" {
		e = q.ExpireAfterLogin
	}
	f := strings.Fields(e)
	return len(f) > 0 && f[0] == "0"
}

// vanish removes the messages retrieved in this session, for
// Quirks.VanishRetrieved.
func (ss *session) vanish() {
	if ss.srv.cfg.Quirks.VanishRetrieved {
		ss.remove(ss.retrieved)
	}
}

func (ss *session) handleAuth(verb, arg string) error {
	cfg := &ss.srv.cfg
	switch verb {
	case "STLS":
		if cfg.STLS == nil || ss.tls {
			return ss.errf("STLS not available")
		}
		ss.line("+OK Begin TLS negotiation")
		if cfg.STLSInject != "" {
			ss.w.WriteString(cfg.STLSInject)
		}
		if err := ss.w.Flush(); err != nil {
			return err
		}
		tconn := tls.Server(ss.conn, cfg.STLS)
		tconn.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tconn.Handshake(); err != nil {
			return errHangUp
		}
		tconn.SetDeadline(time.Time{})
		ss.conn, ss.tls = tconn, true
		ss.r.Reset(tconn)
		ss.w.Reset(tconn)
		return nil
	case "AUTH":
		return ss.auth(arg)
	case "UTF8":
		if !cfg.UTF8 {
			return ss.unknown("unknown command")
		}
		ss.srv.mu.Lock()
		ss.srv.utf8++
		ss.srv.mu.Unlock()
		return ss.line("+OK UTF8 enabled")
	case "USER":
		if cfg.NoUser {
			return ss.errf("USER not allowed")
		}
		ss.user = arg
		if err := ss.line("+OK"); err != nil {
			return err
		}
		if cfg.Quirks.SplitLogin {
			return ss.w.Flush() // pop3-login answers at once
		}
		return nil
	case "PASS":
		if ss.user != cfg.User || arg != cfg.Password {
			ss.user = ""
			return ss.errf("[AUTH] Authentication failed.")
		}
		if cfg.Quirks.SplitLogin {
			pause := cfg.Quirks.LoginPause
			if pause <= 0 {
				pause = 2 * time.Millisecond
			}
			time.Sleep(pause) // the hand-off to the pop3 process
		}
		return ss.login()
	case "APOP":
		user, digest, _ := strings.Cut(arg, " ")
		sum := md5.Sum([]byte(ss.timestamp + cfg.Password))
		if cfg.Quirks.APOPNoSecret {
			return ss.errf("authentication failed")
		}
		if !cfg.APOP || user != cfg.User || digest != hex.EncodeToString(sum[:]) {
			return ss.errf("[AUTH] Authentication failed.")
		}
		return ss.login()
	}
	return ss.unknown("unknown command in AUTHORIZATION state")
}

func (ss *session) login() error {
	s := ss.srv
	q := s.cfg.Quirks
	s.mu.Lock()
	if s.locked {
		s.mu.Unlock()
		if q.LockedReply != "" {
			return ss.line(q.LockedReply)
		}
		return ss.errf("[IN-USE] Mailbox is locked by another POP3 session")
	}
	if q.EnforceLoginDelay && s.cfg.LoginDelay > 0 && time.Since(s.lastLogin) < time.Duration(s.cfg.LoginDelay)*time.Second {
		s.mu.Unlock()
		return ss.errf("[LOGIN-DELAY] Logged in too recently, try again later")
	}
	s.locked = true
	s.lastLogin = time.Now()
	ss.msgs = append([]*Message(nil), s.mailbox...)
	s.mu.Unlock()
	if q.SortedByUID {
		slices.SortStableFunc(ss.msgs, func(a, b *Message) int { return strings.Compare(a.UID, b.UID) })
	}
	ss.authed = true
	ss.deleted = map[int]bool{}
	ss.retrieved = map[int]bool{}
	if q.DiscardAfterLogin {
		ss.discardInput()
	}
	return ss.line(fmt.Sprintf("+OK logged in, %d messages", len(ss.msgs)))
}

// discardInput drops what the client sent behind the login command, as
// the process a login hands the connection to never sees it: what is
// buffered, and what arrives within a moment (the rest of the client's
// write may still be in flight). The client cannot yet have sent anything
// in answer to the reply, which has not been sent.
func (ss *session) discardInput() {
	n := ss.r.Buffered()
	ss.r.Discard(n)
	ss.conn.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	buf := make([]byte, 4096)
	for {
		m, err := ss.conn.Read(buf)
		n += m
		if err != nil {
			break
		}
	}
	ss.conn.SetReadDeadline(time.Time{})
	ss.srv.mu.Lock()
	ss.srv.discarded += n
	ss.srv.mu.Unlock()
}

func (ss *session) unlock() {
	if ss.authed {
		ss.srv.mu.Lock()
		ss.srv.locked = false
		ss.srv.mu.Unlock()
		ss.authed = false
	}
}

// commit removes the messages deleted in this session from the mailbox.
func (ss *session) commit() { ss.remove(ss.deleted) }

// remove takes the messages numbered in nums (of this session's view)
// out of the mailbox.
func (ss *session) remove(nums map[int]bool) {
	if len(nums) == 0 {
		return
	}
	s := ss.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	gone := map[*Message]bool{}
	for n := range nums {
		gone[ss.msgs[n-1]] = true
	}
	kept := s.mailbox[:0]
	for _, m := range s.mailbox {
		if !gone[m] {
			kept = append(kept, m)
		}
	}
	s.mailbox = kept
}

// msg returns message number arg if it exists and is not deleted.
func (ss *session) msg(arg string) (int, *Message, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(arg))
	if err != nil || n < 1 || n > len(ss.msgs) || ss.deleted[n] {
		return 0, nil, false
	}
	return n, ss.msgs[n-1], true
}

func (ss *session) handleTransaction(verb, arg string) error {
	cfg := &ss.srv.cfg
	switch verb {
	case "STAT":
		count, size := 0, 0
		for i, m := range ss.msgs {
			if !ss.deleted[i+1] {
				count++
				size += wireSize(m.Data)
			}
		}
		return ss.line(fmt.Sprintf("+OK %d %d", count, size))
	case "LIST", "UIDL":
		if verb == "UIDL" && cfg.NoUIDL {
			return ss.unknown("unknown command")
		}
		item := func(n int, m *Message) string {
			if verb == "UIDL" {
				return fmt.Sprintf("%d %s", n, m.UID)
			}
			return fmt.Sprintf("%d %d", n, m.listSize())
		}
		if arg != "" {
			if verb == "UIDL" && cfg.Quirks.NoUIDLOne {
				return ss.errf("UIDL with an argument is not supported")
			}
			n, m, ok := ss.msg(arg)
			if !ok {
				return ss.errf("no such message")
			}
			return ss.line("+OK " + item(n, m))
		}
		ss.line("+OK")
		for i, m := range ss.msgs {
			if !ss.deleted[i+1] {
				ss.line(item(i+1, m))
			}
		}
		return ss.line(".")
	case "RETR", "TOP":
		if verb == "TOP" && cfg.NoTop {
			return ss.unknown("unknown command")
		}
		num, lines, _ := strings.Cut(arg, " ")
		_, m, ok := ss.msg(num)
		if !ok {
			return ss.errf("no such message")
		}
		data := m.Data
		if verb == "TOP" {
			nl, err := strconv.Atoi(lines)
			if err != nil || nl < 0 {
				return ss.errf("bad line count")
			}
			data = topOf(data, nl)
		}
		if verb == "RETR" {
			n, _ := strconv.Atoi(num)
			ss.retrieved[n] = true
		}
		ss.line(fmt.Sprintf("+OK %d octets", m.listSize()))
		if cfg.Quirks.XUIDL {
			ss.line("X-UIDL: " + m.UID)
		}
		writeStuffed(ss.w, data)
		return ss.line(".")
	case "DELE":
		n, _, ok := ss.msg(arg)
		if !ok {
			return ss.errf("no such message")
		}
		ss.deleted[n] = true
		return ss.line("+OK deleted")
	case "RSET":
		ss.deleted = map[int]bool{}
		return ss.line("+OK")
	}
	return ss.unknown("unknown command")
}

// wireSize is the size of data with CRLF line endings, as LIST reports it.
func wireSize(data []byte) int {
	return len(data) + bytes.Count(data, []byte("\n")) - bytes.Count(data, []byte("\r\n"))
}

// topOf returns the header and the first n lines of the body.
func topOf(data []byte, n int) []byte {
	norm := bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	end := bytes.Index(norm, []byte("\n\n"))
	if end < 0 {
		return norm
	}
	end += 2
	for ; n > 0 && end < len(norm); n-- {
		i := bytes.IndexByte(norm[end:], '\n')
		if i < 0 {
			return norm
		}
		end += i + 1
	}
	return norm[:end]
}

// writeStuffed writes data as the body of a multi-line response: CRLF line
// endings, a dot doubled at the start of a line, and a final CRLF added if
// data does not end with a line break.
func writeStuffed(w io.Writer, data []byte) {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 0 && line[0] == '.' {
			w.Write([]byte("."))
		}
		w.Write(line)
		w.Write([]byte("\r\n"))
	}
}
