package deliver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// DefaultLMTPTimeout bounds each read and write of an LMTP session when
// LMTP.Timeout is zero.
const DefaultLMTPTimeout = 5 * time.Minute

// LMTP delivers to an LMTP server (RFC 2033), such as Dovecot's, over a
// Unix socket or TCP. The message is spooled first, so that the server
// never sees an incomplete one; the envelope sender (MAIL FROM) is the
// message's Return-Path, else its From address.
//
// LMTP answers for each recipient. A message counts as delivered only
// when every recipient accepted it; otherwise it stays on the POP3
// server, and the error is temporary only if every refusal was (4xx).
// Recipients that accepted it will get it again at the next attempt, so a
// partial failure is delivered at least once to each; with one recipient
// (the usual case) it is exactly once.
type LMTP struct {
	// Addr is a Unix socket's path (or "unix:PATH") or "host:port".
	Addr string
	// Recipients are the RCPT TO addresses; empty means the envelope's
	// recipient.
	Recipients []string
	// Timeout bounds connecting and each read and write; 0 means
	// DefaultLMTPTimeout.
	Timeout   time.Duration
	LocalName string // for LHLO; "" means the host name
	SpoolDir  string // where to spool; "" means os.TempDir()

	mu sync.Mutex // one transaction at a time on the one connection
	c  *smtp.Client
}

func (l *LMTP) target() string { return "lmtp " + l.Addr }

func (l *LMTP) timeout() time.Duration {
	if l.Timeout > 0 {
		return l.Timeout
	}
	return DefaultLMTPTimeout
}

// network returns the network and address to dial.
func (l *LMTP) network() (string, string) {
	if p, ok := strings.CutPrefix(l.Addr, "unix:"); ok {
		return "unix", p
	}
	if strings.HasPrefix(l.Addr, "/") || strings.HasPrefix(l.Addr, ".") {
		return "unix", l.Addr
	}
	return "tcp", l.Addr
}

// Stage implements Deliverer: it spools the message and reads its sender.
func (l *LMTP) Stage(ctx context.Context, r io.Reader, env Envelope) (Staged, error) {
	f, err := spool(l.SpoolDir, l.target(), r)
	if err != nil {
		return nil, err
	}
	sender, err := spoolSender(f)
	if err != nil {
		f.Close()
		return nil, &Error{Target: l.target(), Temporary: true, Err: err}
	}
	rcpts := l.Recipients
	if len(rcpts) == 0 {
		rcpts = []string{env.Recipient}
	}
	return &stagedLMTP{l: l, spool: f, sender: sender, rcpts: rcpts}, nil
}

// Flush implements Deliverer. The server's reply to the message's end is
// its promise that the message is safe: there is nothing to flush.
func (l *LMTP) Flush() error { return nil }

// Close implements Deliverer: it ends the session with QUIT.
func (l *LMTP) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil {
		l.c.Quit()
		l.c.Close()
		l.c = nil
	}
	return nil
}

// client returns the session, connecting and sending LHLO if there is
// none.
func (l *LMTP) client(ctx context.Context) (*smtp.Client, error) {
	if l.c != nil {
		return l.c, nil
	}
	network, addr := l.network()
	d := net.Dialer{Timeout: l.timeout()}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := smtp.NewClientLMTP(&deadlineConn{Conn: conn, timeout: l.timeout()})
	c.CommandTimeout, c.SubmissionTimeout = l.timeout(), l.timeout()
	name := l.LocalName
	if name == "" {
		if name, err = os.Hostname(); err != nil || name == "" {
			name = "localhost"
		}
	}
	if err := c.Hello(name); err != nil {
		c.Close()
		return nil, fmt.Errorf("LHLO: %w", err)
	}
	l.c = c
	return c, nil
}

// drop closes a session that failed, so that the next message starts a
// new one.
func (l *LMTP) drop() {
	if l.c != nil {
		l.c.Close()
		l.c = nil
	}
}

type stagedLMTP struct {
	l      *LMTP
	spool  *os.File
	sender string
	rcpts  []string
}

// Abort implements Staged.
func (s *stagedLMTP) Abort() {
	if s.spool != nil {
		s.spool.Close()
		s.spool = nil
	}
}

// Publish runs one LMTP transaction: MAIL, RCPT for each recipient, DATA,
// and a reply for each recipient that was accepted.
func (s *stagedLMTP) Publish(ctx context.Context) error {
	defer s.Abort()
	l := s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		// Unblock a read or write: the session is given up.
		if c := l.c; c != nil {
			c.Close()
		}
	})
	defer stop()
	err := s.transaction(ctx)
	var rerr *RecipientsError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &rerr):
		return &Error{Target: l.target(), Temporary: rerr.Temporary(), Err: err}
	default:
		l.drop()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return &Error{Target: l.target(), Temporary: smtpTemporary(err), Err: err}
	}
}

func (s *stagedLMTP) transaction(ctx context.Context) error {
	c, err := s.l.client(ctx)
	if err != nil {
		return err
	}
	opts := &smtp.MailOptions{}
	if ok, _ := c.Extension("8BITMIME"); ok {
		opts.Body = smtp.Body8BitMIME
	}
	sender := lmtpAddr(s.sender)
	if !isASCII(sender) {
		if ok, _ := c.Extension("SMTPUTF8"); ok {
			opts.UTF8 = true
		} else {
			sender = "" // cannot be said without SMTPUTF8: the null sender
		}
	}
	if err := c.Mail(sender, opts); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	refused := &RecipientsError{}
	var accepted []string
	for _, r := range s.rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				return fmt.Errorf("RCPT TO: %w", err)
			}
			refused.add(r, se)
			continue
		}
		accepted = append(accepted, r)
	}
	if len(accepted) == 0 {
		if err := c.Reset(); err != nil {
			s.l.drop()
		}
		return refused
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := io.Copy(w, s.spool); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	_, err = w.CloseWithLMTPResponse()
	var perRcpt smtp.LMTPDataError
	switch {
	case err == nil:
	case errors.As(err, &perRcpt):
		if _, only := err.(smtp.LMTPDataError); !only {
			// The session broke before every recipient's reply came.
			return fmt.Errorf("end of DATA: %w", err)
		}
		for r, se := range perRcpt {
			refused.add(r, se)
		}
	default:
		return fmt.Errorf("end of DATA: %w", err)
	}
	if len(refused.Refused) == 0 {
		return nil
	}
	for _, r := range accepted {
		if _, ok := perRcpt[r]; !ok {
			refused.Accepted = append(refused.Accepted, r)
		}
	}
	return refused
}

// RecipientsError says which recipients refused a message over LMTP, and
// which accepted it all the same.
type RecipientsError struct {
	Refused  map[string]*smtp.SMTPError
	Accepted []string
}

func (e *RecipientsError) add(rcpt string, se *smtp.SMTPError) {
	if e.Refused == nil {
		e.Refused = map[string]*smtp.SMTPError{}
	}
	e.Refused[rcpt] = se
}

// Temporary reports whether every refusal was temporary (4xx).
func (e *RecipientsError) Temporary() bool {
	for _, se := range e.Refused {
		if !se.Temporary() {
			return false
		}
	}
	return true
}

func (e *RecipientsError) Error() string {
	rcpts := make([]string, 0, len(e.Refused))
	for r := range e.Refused {
		rcpts = append(rcpts, r)
	}
	sort.Strings(rcpts)
	var b strings.Builder
	for i, r := range rcpts {
		if i > 0 {
			b.WriteString("; ")
		}
		se := e.Refused[r]
		fmt.Fprintf(&b, "<%s> refused: %d", r, se.Code)
		if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
			fmt.Fprintf(&b, " %d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		fmt.Fprintf(&b, " %s", se.Message)
	}
	if len(e.Accepted) > 0 {
		fmt.Fprintf(&b, "; accepted by <%s>, which will get it again when it is retried", strings.Join(e.Accepted, ">, <"))
	}
	return b.String()
}

// smtpTemporary: an SMTP reply is temporary if 4xx; anything else that
// went wrong (the connection, a timeout) may clear by itself.
func smtpTemporary(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Temporary()
	}
	return true
}

// lmtpAddr makes the envelope sender safe for MAIL FROM: no brackets,
// white space or control characters; otherwise the null sender.
func lmtpAddr(a string) string {
	if strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '<' || r == '>' }) {
		return ""
	}
	return a
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// deadlineConn bounds every read and write by its own timeout. go-smtp
// sets deadlines around its commands and clears them afterwards, which
// would leave the message's data unbounded; here the client's deadlines
// are ignored and each operation gets a fresh one.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}

func (c *deadlineConn) SetDeadline(time.Time) error      { return nil }
func (c *deadlineConn) SetReadDeadline(time.Time) error  { return nil }
func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }
