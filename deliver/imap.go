package deliver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"net"
	"net/mail"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// DefaultIMAPTimeout bounds each read and write of an IMAP session when
// IMAP.Timeout is zero.
const DefaultIMAPTimeout = 2 * time.Minute

// The IMAP TLS modes (IMAP.TLS).
const (
	IMAPImplicit = "implicit" // TLS from the first octet (port 993)
	IMAPStartTLS = "starttls" // STARTTLS before login (port 143)
	IMAPNone     = "none"     // no TLS: only where the account allows it
)

// The IMAP authentication mechanisms (IMAP.Auth).
const (
	IMAPAuthAuto        = "auto"
	IMAPAuthPlain       = "plain"
	IMAPAuthLogin       = "login"
	IMAPAuthXOAuth2     = "xoauth2"
	IMAPAuthOAuthBearer = "oauthbearer"
)

// IMAP delivers into a folder of an IMAP mailbox (RFC 9051, RFC 3501) by
// APPEND. It holds one connection, opened at the first message (or the
// first Settle) and closed by Close: one session per poll.
//
// Each message is spooled first (with CRLF line ends, as IMAP wants it),
// so that the server never sees an incomplete one and its size is known
// for the literal. Publish sends the APPEND and does not wait for the
// server's answer; Flush waits for the answers to every APPEND sent, so
// the replies of a batch overlap, and Mark (Marker) lets the next batch
// go out while the answers for the last are on their way. A message counts as delivered only once
// its APPEND's tagged OK has been read. The internal date is the date of
// the message's first Received field (after the caller's own), else its
// Date, else now, so that the folder sorts as the mail arrived.
//
// Each staged message has a Ref (see Settle): after a crash the next poll
// looks for it in the folder.
type IMAP struct {
	// Addr is "host:port".
	Addr string
	// TLS is IMAPImplicit, IMAPStartTLS or IMAPNone.
	TLS string
	// TLSConfig verifies the server; nil means the defaults for the
	// host of Addr.
	TLSConfig *tls.Config
	// User is the login name.
	User string
	// Password returns the password (called once per session); unused
	// with a token. With Auth xoauth2 or oauthbearer and no Token, it
	// returns the access token.
	Password func(ctx context.Context) (string, error)
	// Token returns an OAuth2 access token; nil for password logins.
	Token func(ctx context.Context) (string, error)
	// Auth is one of the IMAPAuth constants; "" means auto.
	Auth string
	// AllowInsecureAuth allows a password or token over a connection
	// without TLS.
	AllowInsecureAuth bool
	// Folder is the mailbox to append to; "" means INBOX. It is created
	// if it does not exist.
	Folder string
	// Flags are set on each message appended (e.g. `\Seen`).
	Flags []string
	// Timeout bounds connecting and each read and write; 0 means
	// DefaultIMAPTimeout.
	Timeout  time.Duration
	SpoolDir string // where to spool; "" means os.TempDir()
	// SettleGrace is how old a pending record must be before Settle
	// reports its message missing; 0 means DefaultIMAPSettleGrace.
	SettleGrace time.Duration
	// Trace, if set, receives the session's protocol trace, a line per
	// Write: "C: " and the line the client sent, "S: " and the line
	// the server sent, as the POP3 trace has them. It is safe to show:
	// LOGIN's arguments and everything the client sends during an
	// AUTHENTICATE (the initial response, the continuation answers)
	// are redacted, literals are shown as their size (APPEND's as "<N
	// octets of message data>"), the password or token is replaced
	// wherever the server echoes it, and each line is cut at 1000
	// octets and has its control characters escaped.
	Trace io.Writer

	mu       sync.Mutex
	c        *imapclient.Client
	floor    uint32        // the folder's UIDNEXT when the session began
	validity uint32        // and its UIDVALIDITY
	inflight []*imapAppend // sent and not yet taken by a wait, in order
	sent     uint64        // APPENDs published, the seq of the last
	tr       *imapTrace    // the session's trace, if Trace is set
	caps     imap.CapSet
	// Literals, if set, remembers for the IMAP values of one target (a
	// daemon's polls) a server that did not honour non-synchronizing
	// literals; nil remembers it for this value's life only.
	Literals *LiteralTrust
	// literals is the value's own, used when Literals is nil.
	literals LiteralTrust
	lp       *literalPlusConn // the session's, under c
	// live is c, for the watches of contexts, which run without mu.
	live atomic.Pointer[imapclient.Client]
	// waiting is held by the one wait (Flush or a Mark's) reading
	// answers, without mu, so that Publish may send meanwhile.
	waiting sync.Mutex
}

func (m *IMAP) folder() string {
	if m.Folder == "" {
		return "INBOX"
	}
	return m.Folder
}

func (m *IMAP) target() string {
	return "imap://" + url.PathEscape(m.User) + "@" + m.Addr + " folder " + strconv.Quote(m.folder())
}

// identity names the mailbox: user and server, not the port (the same
// mailbox is reached by IMAPS and by STARTTLS, or through a tunnel). It is
// the Target of the Refs this deliverer settles.
func (m *IMAP) identity() string {
	host, _, err := net.SplitHostPort(m.Addr)
	if err != nil {
		host = m.Addr
	}
	return "imap://" + url.PathEscape(m.User) + "@" + strings.ToLower(host)
}

func (m *IMAP) timeout() time.Duration {
	if m.Timeout > 0 {
		return m.Timeout
	}
	return DefaultIMAPTimeout
}

// fail wraps err as the IMAP side's failure, temporary or not as the
// server's response code says (see imapTemporary).
func (m *IMAP) fail(err error) error {
	var de *Error
	if errors.As(err, &de) {
		return err
	}
	var ce *imapCredentialError
	if errors.As(err, &ce) {
		// Not the server's doing: it has not been asked.
		return &Error{Target: m.target(), Err: err}
	}
	if lerr := m.lp.refused(); lerr != nil {
		// The server did not honour a non-synchronizing literal: what
		// go-imap saw (a BAD, a closed connection) says less than why
		// the session was cut. Later sessions send none.
		m.trust().distrust(lerr)
		if !errors.Is(err, errLiteralRefused) {
			err = fmt.Errorf("%w (%w)", lerr, err)
		}
	}
	var ie *imap.Error
	if errors.As(err, &ie) && len(ie.Text) > maxIMAPErrorText {
		// The server's text goes to logs and the status file: a
		// line's worth is enough (a POP3 reply has 512 octets).
		ie.Text = strings.ToValidUTF8(ie.Text[:maxIMAPErrorText], "") + "..."
	}
	return &Error{Target: m.target(), Temporary: imapTemporary(err), Err: fmt.Errorf("the IMAP server: %w", err)}
}

// down marks err, a failure to open a session (connecting, TLS, the
// login, the folder), as the target's: no other message would fare
// better this poll (Error.Down).
func down(err error) error {
	var de *Error
	if errors.As(err, &de) {
		de.Down = true
	}
	return err
}

// maxIMAPErrorText bounds the server's text kept in an error.
const maxIMAPErrorText = 300

// imapTemporary reports whether a failure may clear by itself: a full
// mailbox (OVERQUOTA: space may be freed), a server that is busy
// (UNAVAILABLE, INUSE), a dropped connection or a timeout. A refused
// login, a message too large (LIMIT, TOOBIG), a folder that cannot be
// written (NOPERM, CANNOT) need the user.
func imapTemporary(err error) bool {
	if errors.Is(err, errLiteralRefused) {
		// Not temporary: but the next session sends synchronizing
		// literals only (see LiteralTrust).
		return false
	}
	var ie *imap.Error
	if !errors.As(err, &ie) {
		var ae *imapAuthError
		return !errors.As(err, &ae)
	}
	switch ie.Code {
	case imap.ResponseCodeOverQuota, imap.ResponseCodeUnavailable, imap.ResponseCodeInUse,
		imap.ResponseCodeServerBug:
		return true
	case "":
		return ie.Type == imap.StatusResponseTypeNo
	}
	return false
}

// LiteralTrust remembers a server that did not honour the
// non-synchronizing literals (LITERAL+, LITERAL-) it advertises, so that
// later sessions to it send synchronizing ones only: a round trip per
// message, and no line of a message read as a command. The zero value
// trusts the server to the extent of its probe; it is safe for
// concurrent use.
type LiteralTrust struct {
	mu  sync.Mutex
	err error
}

// Distrusted returns how the server failed, or nil.
func (t *LiteralTrust) Distrusted() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

func (t *LiteralTrust) distrust(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = err
	}
}

// trust returns the LiteralTrust in use.
func (m *IMAP) trust() *LiteralTrust {
	if m.Literals != nil {
		return m.Literals
	}
	return &m.literals
}

// imapCredentialError is a login that never reached the server: the
// password or token could not be had here (a password file others can
// read, a password_command that failed, a refresh token the provider
// refused), or the configuration allows none. It needs the user, and must
// not read as the IMAP server's refusal.
type imapCredentialError struct {
	what string // "password", "token", or "" for the configuration
	err  error
}

func (e *imapCredentialError) Error() string {
	if e.what == "" {
		return "no login to the IMAP server: " + e.err.Error()
	}
	return "no login to the IMAP server: the " + e.what + ": " + e.err.Error()
}
func (e *imapCredentialError) Unwrap() error { return e.err }

// imapAuthError is a refused login.
type imapAuthError struct{ err error }

func (e *imapAuthError) Error() string { return "login refused: " + e.err.Error() }
func (e *imapAuthError) Unwrap() error { return e.err }

// Stage implements Deliverer: it spools the message with CRLF line ends,
// noting its size, digest, Message-ID and date.
func (m *IMAP) Stage(ctx context.Context, r io.Reader, env Envelope) (Staged, error) {
	f, err := os.CreateTemp(m.SpoolDir, "popfetch-imap-*")
	if err != nil {
		return nil, &Error{Target: m.target(), Temporary: true, Err: fmt.Errorf("spool: %w", err)}
	}
	os.Remove(f.Name())
	w := &crlfWriter{w: bufio.NewWriterSize(f, 32<<10), h: sha256.New(), skip: env.Prepended}
	src := &errReader{r: r}
	_, err = io.Copy(w, src)
	if err == nil {
		err = w.w.Flush()
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		if src.err != nil {
			return nil, src.err
		}
		return nil, &Error{Target: m.target(), Temporary: true, Err: fmt.Errorf("spool: %w", err)}
	}
	id, date := headerFacts(w.head.Bytes())
	s := &stagedIMAP{m: m, spool: f, size: w.n, sum: hex.EncodeToString(w.h.Sum(nil)), msgID: id, date: date}
	// The session begins here, not at Publish: the pending record (Ref)
	// needs the folder's UIDNEXT from before any APPEND.
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.closeOnDone(ctx)()
	if _, err := m.client(ctx); err != nil {
		f.Close()
		m.drop()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, down(m.fail(err))
	}
	s.validity, s.floor = m.validity, m.floor
	return s, nil
}

// headerFacts reads the Message-ID and the internal date out of a
// message's header: the date of the first Received field, else of Date.
func headerFacts(head []byte) (id string, date time.Time) {
	tp := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(head), strings.NewReader("\r\n\r\n"))))
	h, _ := tp.ReadMIMEHeader() // a damaged header yields what could be read
	id = strings.TrimSpace(h.Get("Message-Id"))
	if len(id) > 250 || strings.ContainsFunc(id, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		id = ""
	}
	if rcv := h.Get("Received"); rcv != "" {
		if i := strings.LastIndexByte(rcv, ';'); i >= 0 {
			if t, err := mail.ParseDate(strings.TrimSpace(rcv[i+1:])); err == nil {
				return id, t
			}
		}
	}
	if t, err := mail.ParseDate(h.Get("Date")); err == nil {
		return id, t
	}
	return id, time.Now()
}

// maxIMAPHead bounds the header kept to read the Message-ID and dates.
const maxIMAPHead = 64 << 10

// crlfWriter writes LF-ended lines as CRLF-ended ones, counting and
// hashing what it writes, and keeps the message's header (after the first
// skip octets of input) up to maxIMAPHead.
type crlfWriter struct {
	w      *bufio.Writer
	h      hash.Hash
	n      int64
	skip   int64
	head   bytes.Buffer
	inBody bool
	last   byte // the last octet of the header kept
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	for i := 0; i < len(p); {
		j := bytes.IndexByte(p[i:], '\n')
		chunk := p[i:]
		if j >= 0 {
			chunk = p[i : i+j]
		}
		c.out(chunk)
		if j < 0 {
			break
		}
		c.out([]byte("\r\n"))
		i += j + 1
	}
	return len(p), nil
}

func (c *crlfWriter) out(b []byte) {
	c.w.Write(b) // a failure shows at Flush
	c.h.Write(b)
	c.n += int64(len(b))
	if c.inBody {
		return
	}
	for _, o := range b {
		if o == '\r' {
			continue
		}
		if c.skip > 0 {
			c.skip--
			continue
		}
		if o == '\n' && c.last == '\n' {
			c.inBody = true
			return
		}
		c.last = o
		if c.head.Len() < maxIMAPHead {
			c.head.WriteByte(o)
		}
	}
}

// Flush implements Deliverer: it waits for the answer to every APPEND
// sent. A folder that went missing ([TRYCREATE]) is created and the
// messages it refused sent again. On failure nothing is known of the
// APPENDs after the first that failed: the caller leaves them all on the
// POP3 server, and Settle finds those that arrived.
func (m *IMAP) Flush() error {
	m.mu.Lock()
	upTo := m.sent
	m.mu.Unlock()
	return m.waitFor(upTo)
}

// Mark implements Marker: the wait it returns reads the answers to the
// APPENDs sent so far, as Flush does, while Publish sends more.
func (m *IMAP) Mark() func() error {
	m.mu.Lock()
	upTo := m.sent
	m.mu.Unlock()
	return func() error { return m.waitFor(upTo) }
}

// waitFor waits for the answers to the APPENDs up to seq upTo that no
// other wait took, without holding mu while it waits (see Flush).
func (m *IMAP) waitFor(upTo uint64) error {
	m.waiting.Lock()
	defer m.waiting.Unlock()
	m.mu.Lock()
	k := 0
	for k < len(m.inflight) && m.inflight[k].seq <= upTo {
		k++
	}
	mine := slices.Clone(m.inflight[:k])
	m.inflight = slices.Delete(m.inflight, 0, k)
	m.mu.Unlock()
	defer func() {
		for _, a := range mine {
			a.done()
		}
	}()
	for try := 0; ; try++ {
		var retry []*imapAppend
		var firstErr error
		for _, a := range mine {
			_, err := a.cmd.Wait()
			var ie *imap.Error
			switch {
			case err == nil:
			case errors.As(err, &ie) && ie.Code == imap.ResponseCodeTryCreate && try == 0:
				retry = append(retry, a)
			case firstErr == nil:
				firstErr = err
			}
		}
		if firstErr == nil && len(retry) == 0 {
			return nil
		}
		m.mu.Lock()
		err := m.resend(firstErr, retry)
		m.mu.Unlock()
		if err != nil {
			return err
		}
		for _, a := range mine {
			if !slices.Contains(retry, a) {
				a.done() // answered OK: done with
			}
		}
		mine = retry
	}
}

// resend creates the folder and sends retry again, or, after firstErr,
// drops the session. m.mu is held.
func (m *IMAP) resend(firstErr error, retry []*imapAppend) error {
	if firstErr != nil {
		m.drop()
		return m.fail(fmt.Errorf("APPEND: %w", firstErr))
	}
	if m.c == nil {
		return m.fail(errors.New("APPEND: the session was closed"))
	}
	if err := m.create(); err != nil {
		m.drop()
		return m.fail(err)
	}
	for _, a := range retry {
		if err := m.send(a); err != nil {
			m.drop()
			return m.fail(err)
		}
	}
	return nil
}

// Close implements Deliverer: it ends the session with LOGOUT.
func (m *IMAP) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range m.inflight {
		a.done()
	}
	m.inflight = nil
	if m.c != nil {
		// LOGOUT is a courtesy: it gets the timeout of one read, in
		// all, not per octet.
		c := m.c
		t := time.AfterFunc(m.timeout(), func() { c.Close() })
		c.Logout().Wait()
		t.Stop()
		m.c.Close()
		m.setClient(nil)
	}
	return nil
}

// drop closes a session that failed, so that the next use starts a new one.
func (m *IMAP) drop() {
	if m.c != nil {
		m.c.Close()
		m.setClient(nil)
	}
}

// setClient makes c the session. m.mu is held.
func (m *IMAP) setClient(c *imapclient.Client) {
	m.c = c
	m.live.Store(c)
}

// closeOnDone closes the session, the one there is now or the one made
// meanwhile, when ctx ends, until the returned function is called: a
// blocked read or write then returns. m.mu is held; the watch itself
// runs without it.
func (m *IMAP) closeOnDone(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		if c := m.live.Load(); c != nil {
			c.Close()
		}
	})
}

// client returns the session, connecting, logging in and reading the
// folder's UIDNEXT and UIDVALIDITY (creating the folder if it is missing)
// if there is none. m.mu is held.
func (m *IMAP) client(ctx context.Context) (*imapclient.Client, error) {
	if m.c != nil {
		return m.c, nil
	}
	return m.dial(ctx, true)
}

// literalProbe is the LIST pattern of the probe for non-synchronizing
// literals: read as a command line, it is a tag alone (BAD); as a
// pattern, it matches no mailbox of a real user.
const literalProbe = "popfetch-literal-probe-"

// dial starts a session: connect, log in, probe non-synchronizing
// literals, read the folder's UIDNEXT and UIDVALIDITY (creating the
// folder if it is missing). A server that fails the probe gets a
// new session, once, if redial. m.mu is held.
func (m *IMAP) dial(ctx context.Context, redial bool) (*imapclient.Client, error) {
	m.lp = nil
	d := net.Dialer{Timeout: m.timeout()}
	conn, err := d.DialContext(ctx, "tcp", m.Addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	host, _, _ := net.SplitHostPort(m.Addr)
	tc := m.TLSConfig
	if tc == nil {
		tc = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	dc := net.Conn(&deadlineConn{Conn: conn, timeout: m.timeout()})
	opts := &imapclient.Options{TLSConfig: tc}
	// The trace sits between the literals' rewriting and the wire: it
	// shows what is sent and what the server sent, nothing local.
	traced := func(c net.Conn) net.Conn { return c }
	if m.Trace != nil {
		m.tr = newIMAPTrace(m.Trace)
		traced = func(c net.Conn) net.Conn { return &traceConn{Conn: c, t: m.tr} }
	}
	var lp *literalPlusConn
	switch m.TLS {
	case IMAPStartTLS:
		if err := startTLS(traced(dc)); err != nil {
			conn.Close()
			return nil, m.dialHint(err)
		}
		tconn := tls.Client(dc, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS after STARTTLS: %w", err)
		}
		// go-imap takes the connection after the greeting: it is given
		// one, and asks for the capabilities anew (as it must after
		// STARTTLS).
		lp = newLiteralPlusConn(traced(tconn), "* OK popfetch: TLS started\r\n")
	case IMAPNone:
		lp = newLiteralPlusConn(traced(dc), "")
	default:
		tconn := tls.Client(dc, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, m.dialHint(fmt.Errorf("TLS: %w", err))
		}
		lp = newLiteralPlusConn(traced(tconn), "")
	}
	c := imapclient.New(lp, opts)
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		err = fmt.Errorf("greeting: %w", err)
		if strings.Contains(err.Error(), "imapwire:") {
			// go-imap could not parse the greeting (it does not wrap
			// its error): not an IMAP server's, as the POP3 server's
			// "+OK" on its POP3S port.
			err = fmt.Errorf("%w; that is not an IMAP server's greeting: check the port of [account.imap] (IMAP: usually 993, or 143 with tls = \"starttls\")", err)
		}
		return nil, err
	}
	if err := m.login(ctx, c); err != nil {
		c.Close()
		return nil, err
	}
	m.setClient(c)
	m.lp = lp
	m.caps = c.Caps()
	// Non-synchronizing literals only once the server has shown it
	// honours them: a probe that carries nothing of a message's, sent
	// with the STATUS the session begins with (no round trip of its
	// own). See literalPlusConn.
	limit := int64(0)
	switch {
	case m.trust().Distrusted() != nil:
	case m.caps.Has(imap.CapLiteralPlus):
		limit = math.MaxInt64
	case m.caps.Has(imap.CapLiteralMinus):
		limit = literalMinusMax
	}
	lp.arm()
	var probe *imapclient.ListCommand
	if limit > 0 {
		lit := literalProbe
		if limit == math.MaxInt64 {
			// Over LITERAL-'s 4096 octets: a server that takes only
			// small ones fails here, not with a message.
			lit += strings.Repeat("x", literalMinusMax+1-len(lit))
		}
		lp.probe(`"`+literalProbe+`"`, lit)
		probe = c.List("", literalProbe, nil)
	}
	stCmd := c.Status(m.folder(), &imap.StatusOptions{UIDNext: true, UIDValidity: true})
	if probe != nil {
		_, perr := probe.Collect()
		if perr != nil && ctx.Err() != nil {
			// The poll ended: nothing is known of the server.
			m.drop()
			return nil, ctx.Err()
		}
		var ie *imap.Error
		if errors.Is(perr, errLiteralRefused) || (errors.As(perr, &ie) && ie.Type == imap.StatusResponseTypeBad) ||
			(perr != nil && !errors.As(perr, &ie)) {
			// BAD, a "+", or the server gone (RFC 7888 lets a server
			// close the connection on a literal it refuses; a network
			// failure at this moment costs speed, not mail): it is not
			// trusted with a message's octets. A new session, all
			// literals synchronizing.
			derr := fmt.Errorf("LIST with a non-synchronizing literal: %w", perr)
			m.trust().distrust(derr)
			m.drop()
			if redial {
				return m.dial(ctx, false)
			}
			return nil, derr
		}
		lp.trust(limit)
	}
	st, err := stCmd.Wait()
	if err != nil {
		err = fmt.Errorf("STATUS %q: %w", m.folder(), err)
	}
	var ie *imap.Error
	if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo {
		// No folder (Dovecot says so without a response code): create
		// it. If it was another refusal, CREATE fails too, and both
		// are told.
		if cerr := m.create(); cerr != nil {
			err = fmt.Errorf("%w; %w", err, cerr)
		} else {
			st, err = m.status()
		}
	}
	if err != nil {
		m.drop()
		return nil, err
	}
	m.floor, m.validity = 1, 0
	if st.UIDNext > 0 {
		m.floor = uint32(st.UIDNext)
	}
	if st.UIDValidity > 0 {
		m.validity = st.UIDValidity
	}
	return c, nil
}

// dialHint adds to an error of the greeting or the TLS handshake what
// to change when the port and tls do not match, as the POP3 side does:
// a plain-text answer to a TLS handshake, a greeting that never comes
// to a client waiting for one on an IMAPS port, a POP3 server's.
func (m *IMAP) dialHint(err error) error {
	_, port, _ := net.SplitHostPort(m.Addr)
	var (
		rec  tls.RecordHeaderError
		none *noGreetingError
		pop3 *pop3GreetingError
	)
	switch {
	case errors.As(err, &rec):
		hint := fmt.Sprintf("the server does not speak TLS on port %s", port)
		switch rec.RecordHeader[0] {
		case '*':
			hint = fmt.Sprintf("the server answered in plain text (an IMAP greeting): it does not speak TLS on port %s", port)
		case '+', '-':
			return fmt.Errorf("%w; the server answered in plain text, as a POP3 server does: check the port of [account.imap] (IMAP: usually 993, or 143 with tls = \"starttls\")", err)
		}
		return fmt.Errorf("%w; %s: use tls = \"starttls\" in [account.imap] (or the server's IMAPS port, usually 993)", err, hint)
	case errors.As(err, &none):
		return fmt.Errorf("%w; an IMAPS port (usually 993) sends no greeting before a TLS handshake: if port %s is one, use tls = \"implicit\" in [account.imap]", err, port)
	case errors.As(err, &pop3):
		return fmt.Errorf("%w; that is a POP3 server's greeting: check the port of [account.imap] (IMAP: usually 993, or 143 with tls = \"starttls\")", err)
	}
	return err
}

func (m *IMAP) status() (*imap.StatusData, error) {
	st, err := m.c.Status(m.folder(), &imap.StatusOptions{UIDNext: true, UIDValidity: true}).Wait()
	if err != nil {
		return nil, fmt.Errorf("STATUS %q: %w", m.folder(), err)
	}
	return st, nil
}

// create makes the folder; one that exists already (a race with another
// client) is fine.
func (m *IMAP) create() error {
	err := m.c.Create(m.folder(), nil).Wait()
	var ie *imap.Error
	if err != nil && !(errors.As(err, &ie) && ie.Code == imap.ResponseCodeAlreadyExists) {
		return fmt.Errorf("CREATE %q: %w", m.folder(), err)
	}
	return nil
}

// login authenticates as Auth says. auto: a token with XOAUTH2 if the
// server offers it, else OAUTHBEARER; a password with LOGIN, or
// AUTHENTICATE PLAIN where LOGIN is disabled.
func (m *IMAP) login(ctx context.Context, c *imapclient.Client) error {
	if m.TLS == IMAPNone && !m.AllowInsecureAuth {
		return &imapCredentialError{"", errors.New("the connection is not encrypted and allow_insecure_auth is not set")}
	}
	caps := c.Caps()
	mech := m.Auth
	if mech == "" || mech == IMAPAuthAuto {
		switch {
		case m.Token != nil && caps.Has("AUTH=XOAUTH2"):
			mech = IMAPAuthXOAuth2
		case m.Token != nil:
			mech = IMAPAuthOAuthBearer
		case caps.Has(imap.CapLoginDisabled):
			mech = IMAPAuthPlain
		default:
			mech = IMAPAuthLogin
		}
	}
	var err error
	switch mech {
	case IMAPAuthXOAuth2, IMAPAuthOAuthBearer:
		token := m.Token
		if token == nil {
			// As on the POP3 side: a token from the password keys
			// (a password_command that prints one).
			token = m.Password
		}
		if token == nil {
			return &imapCredentialError{"", fmt.Errorf("auth = %q needs an OAuth2 token ([account.imap.oauth2], or a password_command that prints one)", mech)}
		}
		tok, terr := token(ctx)
		if terr != nil {
			return &imapCredentialError{"token", terr}
		}
		m.redact(tok)
		if mech == IMAPAuthXOAuth2 {
			err = m.authenticate(ctx, c, &xoauth2Client{user: m.User, token: tok})
		} else {
			host, _, _ := net.SplitHostPort(m.Addr)
			err = m.authenticate(ctx, c, sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: m.User, Token: tok, Host: host}))
		}
	default:
		if m.Password == nil {
			return &imapCredentialError{"password", errors.New("none is set")}
		}
		pw, perr := m.Password(ctx)
		if perr != nil {
			return &imapCredentialError{"password", perr}
		}
		m.redact(pw)
		if mech == IMAPAuthPlain {
			err = m.authenticate(ctx, c, sasl.NewPlainClient("", m.User, pw))
		} else {
			err = c.Login(m.User, pw).Wait()
		}
	}
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) && (ie.Code == imap.ResponseCodeUnavailable || ie.Code == imap.ResponseCodeInUse) {
			return fmt.Errorf("login: %w", err)
		}
		if errors.As(err, &ie) {
			return &imapAuthError{err}
		}
		return fmt.Errorf("login: %w", err)
	}
	return nil
}

// authenticate runs go-imap's Authenticate, bounded by the timeout of
// one read and by ctx. go-imap (v2.0.0-beta.8) registers its wait for
// the next continuation request after it answers one; a server whose
// tagged answer comes before that (sent along with its "+", ahead of the
// client's response) leaves Authenticate waiting for ever, holding the
// client's command lock, and neither a read timeout nor closing the
// connection ends the wait. The connection is then closed and the
// goroutine left behind, stuck in go-imap with nothing of ours.
func (m *IMAP) authenticate(ctx context.Context, c *imapclient.Client, sc sasl.Client) error {
	done := make(chan error, 1)
	go func() { done <- c.Authenticate(sc) }()
	t := time.NewTimer(m.timeout())
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		c.Close()
		return ctx.Err()
	case <-t.C:
		c.Close()
		return fmt.Errorf("AUTHENTICATE: the exchange did not end within %v (did the server answer before the client's response?)", m.timeout())
	}
}

// redact has the trace, if any, replace secret wherever it appears.
func (m *IMAP) redact(secret string) {
	if m.tr != nil {
		m.tr.redact(secret)
	}
}

// xoauth2Client is the XOAUTH2 mechanism (Google's and Microsoft's
// OAuth2 for IMAP): one initial response, and on failure the server's
// JSON challenge, answered empty.
type xoauth2Client struct{ user, token string }

func (x *xoauth2Client) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

func (x *xoauth2Client) Next([]byte) ([]byte, error) { return []byte{}, nil }

// imapAppend is an APPEND sent and not yet answered.
type imapAppend struct {
	s     *stagedIMAP
	spool *os.File
	cmd   *imapclient.AppendCommand
	seq   uint64 // its place among the APPENDs published
	// unwatch ends the watch of the context the APPEND was published
	// under: a wait has no context of its own, and a server that
	// answers a byte at a time never trips the per-read timeout.
	unwatch func() bool
}

// done closes the spool and ends the watch: the APPEND is answered, or
// will not be.
func (a *imapAppend) done() {
	a.spool.Close()
	if a.unwatch != nil {
		a.unwatch()
	}
}

// send writes one APPEND. m.mu is held.
func (m *IMAP) send(a *imapAppend) error {
	if _, err := a.spool.Seek(0, io.SeekStart); err != nil {
		return err
	}
	flags := make([]imap.Flag, len(m.Flags))
	for i, f := range m.Flags {
		flags[i] = imap.Flag(f)
	}
	cmd := m.c.Append(m.folder(), a.s.size, &imap.AppendOptions{Flags: flags, Time: a.s.date})
	_, err := io.Copy(cmd, a.spool)
	if cerr := cmd.Close(); err == nil {
		err = cerr
	}
	if werr := m.lp.writeErr(); err == nil && werr != nil {
		// go-imap ends a command with a flush whose failure it does
		// not return: the message may not have gone out, whatever
		// the server answers (see literalPlusConn.writeErr).
		err = werr
	}
	if err != nil {
		return fmt.Errorf("APPEND: %w", err)
	}
	a.cmd = cmd
	return nil
}

type stagedIMAP struct {
	m     *IMAP
	spool *os.File
	size  int64
	sum   string
	msgID string
	date  time.Time
	// The folder's UIDVALIDITY and UIDNEXT when the session began.
	validity, floor uint32
}

// Ref implements Referenced. The key holds what finds the message in
// its folder: the folder, its UIDVALIDITY and the UIDNEXT before the
// session's first APPEND (the message's UID cannot be lower), the
// Message-ID, the size and the SHA-256 of the octets appended.
func (s *stagedIMAP) Ref() Ref {
	m := s.m
	v := url.Values{}
	v.Set("f", m.folder())
	v.Set("v", strconv.FormatUint(uint64(s.validity), 10))
	v.Set("u", strconv.FormatUint(uint64(s.floor), 10))
	v.Set("n", strconv.FormatInt(s.size, 10))
	v.Set("h", s.sum)
	if s.msgID != "" {
		v.Set("id", s.msgID)
	}
	return Ref{Kind: "imap", Target: m.identity(), Key: v.Encode()}
}

// Abort implements Staged.
func (s *stagedIMAP) Abort() {
	if s.spool != nil {
		s.spool.Close()
		s.spool = nil
	}
}

// Publish implements Staged: it sends the APPEND; a wait (Flush, Mark)
// reads the answer.
func (s *stagedIMAP) Publish(ctx context.Context) error {
	if s.spool == nil {
		return nil
	}
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.closeOnDone(ctx)()
	_, err := m.client(ctx)
	if err != nil {
		// No session: connecting, TLS or the login failed. The next
		// message would fare no better.
		m.drop()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return down(m.fail(err))
	}
	if err == nil {
		a := &imapAppend{s: s, spool: s.spool}
		if err = m.send(a); err == nil {
			s.spool = nil // a wait closes it
			m.sent++
			a.seq = m.sent
			// Until a wait has its answer, the end of ctx (the poll's
			// ceiling) ends the session.
			c := m.c
			a.unwatch = context.AfterFunc(ctx, func() { c.Close() })
			m.inflight = append(m.inflight, a)
			return nil
		}
	}
	m.drop()
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return m.fail(err)
}

// Settles implements Settler: the Refs of this user on this server.
func (m *IMAP) Settles(r Ref) bool { return r.Kind == "imap" && r.Target == m.identity() }

// DefaultIMAPSettleGrace is how old a pending record must be before
// Settle concludes that its message did not arrive.
const DefaultIMAPSettleGrace = 5 * time.Second

// Settle implements Settler: for each ref it looks in the folder, among
// the messages with a UID at least the record's floor (all of them if the
// folder's UIDVALIDITY changed) and of the record's size and Message-ID,
// for one whose content has the record's digest. Each message found
// settles one ref only, so two identical copies pending need two copies
// in the folder.
//
// A popfetch that was killed may have left APPENDs that the server is
// still taking in (from the socket's buffers, from the network): a
// message not found is looked for again once its record is SettleGrace
// old, and only then reported missing.
func (m *IMAP) Settle(ctx context.Context, refs []Ref) ([]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.closeOnDone(ctx)()
	if _, err := m.client(ctx); err != nil {
		m.drop()
		return nil, m.fail(err)
	}
	found := make([]bool, len(refs))
	used := map[string]bool{} // folder + UID of messages matched
	if err := m.settle(refs, found, used); err != nil {
		return nil, err
	}
	grace := m.SettleGrace
	if grace == 0 {
		grace = DefaultIMAPSettleGrace
	}
	waited, err := WaitGrace(ctx, refs, func(i int) bool { return !found[i] }, grace)
	if err != nil {
		return nil, err
	}
	if !waited {
		return found, nil
	}
	var again []Ref
	var at []int
	for i, r := range refs {
		if !found[i] {
			again, at = append(again, r), append(at, i)
		}
	}
	more := make([]bool, len(again))
	if err := m.settle(again, more, used); err != nil {
		return nil, err
	}
	for j, i := range at {
		found[i] = more[j]
	}
	return found, nil
}

// settle is one look for refs (see Settle), marking found; used holds
// the messages that settled a ref already. m.mu is held.
func (m *IMAP) settle(refs []Ref, found []bool, used map[string]bool) error {
	selected := ""
	var current uint32 // the selected folder's UIDVALIDITY
	for i, r := range refs {
		v, err := url.ParseQuery(r.Key)
		if err != nil {
			return fmt.Errorf("a pending IMAP record is damaged: %w", err)
		}
		folder := v.Get("f")
		size, serr := strconv.ParseInt(v.Get("n"), 10, 64)
		floor, _ := strconv.ParseUint(v.Get("u"), 10, 32)
		validity, _ := strconv.ParseUint(v.Get("v"), 10, 32)
		if folder == "" || serr != nil || size < 0 || v.Get("h") == "" {
			return errors.New("a pending IMAP record is damaged")
		}
		if folder != selected {
			// SELECT, not EXAMINE: it sees what other sessions
			// appended since, each time.
			data, err := m.c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
			var ie *imap.Error
			if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo {
				selected = ""
				continue // no folder: nothing arrived
			}
			if err != nil {
				m.drop()
				return m.fail(fmt.Errorf("EXAMINE %q: %w", folder, err))
			}
			selected, current = folder, data.UIDValidity
		}
		if uint64(current) != validity {
			// The folder was made anew: the floor, a UID of the old
			// one, says nothing of the new UIDs.
			floor = 1
		}
		crit := &imap.SearchCriteria{Smaller: size + 1}
		if size > 0 {
			// An empty message (a POP3 message of no octets) is only
			// SMALLER 1: LARGER takes no negative number.
			crit.Larger = size - 1
		}
		if floor > 1 {
			crit.UID = []imap.UIDSet{{imap.UIDRange{Start: imap.UID(floor), Stop: 0}}}
		}
		if id := v.Get("id"); id != "" {
			crit.Header = []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: id}}
		}
		sd, err := m.c.UIDSearch(crit, nil).Wait()
		if err != nil {
			m.drop()
			return m.fail(fmt.Errorf("UID SEARCH: %w", err))
		}
		for _, uid := range sd.AllUIDs() {
			k := folder + "\x00" + strconv.FormatUint(uint64(uid), 10)
			if used[k] || uint64(uid) < floor {
				// "UID floor:*" holds the folder's last message even
				// if its UID is below floor: not one of the session's.
				continue
			}
			ok, err := m.digestIs(uid, v.Get("h"))
			if err != nil {
				m.drop()
				return m.fail(err)
			}
			if ok {
				used[k], found[i] = true, true
				break
			}
		}
	}
	// The folder stays selected (read-only): APPEND does not mind, and
	// UNSELECT is an extension.
	return nil
}

// digestIs fetches message uid of the selected folder and compares its
// SHA-256 with sum, streaming.
func (m *IMAP) digestIs(uid imap.UID, sum string) (bool, error) {
	cmd := m.c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	})
	defer cmd.Close()
	match := false
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			if b, ok := item.(imapclient.FetchItemDataBodySection); ok && b.Literal != nil {
				h := sha256.New()
				if _, err := io.Copy(h, b.Literal); err != nil {
					return false, fmt.Errorf("UID FETCH: %w", err)
				}
				match = match || hex.EncodeToString(h.Sum(nil)) == sum
			}
		}
	}
	if err := cmd.Close(); err != nil {
		return false, fmt.Errorf("UID FETCH: %w", err)
	}
	return match, nil
}
