package deliver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// literalPlusConn sits between go-imap's client and the connection, and
// decides, literal by literal, whether a client literal goes
// synchronizing ("{N}": the octets only after the server's "+") or
// non-synchronizing ("{N+}", RFC 7888: the octets at once).
//
// go-imap (v2.0.0-beta.8) sends every literal over 4096 octets as a
// synchronizing one and waits for the server's "+" before the message: a
// round trip per message. Where the server has shown that it honours
// non-synchronizing literals (see probe), a line that ends in "{N}" is
// sent as "{N+}" and the "+" go-imap waits for is answered locally, at
// once: the APPENDs of a batch then go out back to back and their answers
// come in together.
//
// Until then, no literal goes non-synchronizing, whatever the server
// advertises: go-imap's own "{N+}" (it sends those for literals up to
// 4096 octets where LITERAL- or IMAP4rev2 is advertised) is sent as "{N}"
// and its octets are held back until the server's "+" (which go-imap does
// not expect: it is taken out of the stream). A server that advertises
// LITERAL+ and does not honour it would read a non-synchronizing
// literal's lines as commands: a message line "x DELETE INBOX" would run
// against the mailbox. Once octets are in TCP nothing calls them back, so
// the only guarantee there is comes before they are sent. This holds
// from the first command: LOGIN sends a user name or password with 8-bit
// characters as a literal, and a server that read it as a command line
// would refuse the login and might log the password.
//
// Once armed (after login), the server's answers are checked too: a "+"
// that no synchronizing literal asked for, or a BAD to a command sent
// with a non-synchronizing literal, means the server does not honour
// them; the connection is closed at once, so that not one more octet is
// sent on it, and every read and write fails with errLiteralRefused.
//
// Both streams are followed (lines, and the literals they announce) so
// that a message's own octets are never mistaken for a literal's
// announcement, and the local "+" is handed to go-imap only between two
// of the server's responses.
type literalPlusConn struct {
	net.Conn

	// nonSyncMax is the largest literal sent non-synchronizing: 0 until
	// a probe passed, then 4096 (LITERAL-) or math.MaxInt64 (LITERAL+).
	nonSyncMax atomic.Int64
	armed      atomic.Bool // after login: an unasked "+" and BADs are checked
	broken     atomic.Bool // refused: nothing more is written

	wmu     sync.Mutex
	wline   []byte // the client's current line, held until its end
	wlit    int64  // literal octets still to pass through unchanged
	wbuf    []byte
	wtag    string // the tag of the client's current command
	wcont   bool   // the current line goes on after a literal
	probeQ  []byte // with probeLit: the quoted argument that probe replaces
	probeLt []byte // the probe's literal
	werr    error  // the first Write that failed (see writeErr)

	rmu        sync.Mutex
	ready      chan struct{} // signalled when inject grows
	inject     []byte        // local responses for go-imap, at the next boundary
	rbuf       []byte        // server octets read, not yet returned
	rerr       error
	dead       chan struct{} // closed when rerr is first set
	rline      []byte        // the tail of the server's current line
	rhead      []byte        // the head of the server's current line
	rcont      bool          // the current line goes on after a literal
	rlen       int           // octets of the server's current line so far
	rlit       int64         // literal octets of the server's still to come
	expectPlus int           // "+" go-imap waits for (synchronizing literals)
	hold       chan error    // a "+" the shim waits for, taken out of the stream
	holdTag    string
	nonSync    map[string]bool // tags of commands sent with a non-synchronizing literal
	chunks     chan readChunk
	started    bool

	done      chan struct{} // closed by Close: the pump stops
	closeOnce sync.Once
}

type readChunk struct {
	b   []byte
	err error
}

// maxResponseLine bounds a line of the server's (its literals not
// counted): go-imap reads a response's text, or a list, into memory
// however long it is, and a hostile server need never end a line.
const maxResponseLine = 1 << 20

// errResponseLine is what Read returns once a line of the server's has
// passed maxResponseLine.
var errResponseLine = fmt.Errorf("a response line of the server's is too long (over %d KiB): refused", maxResponseLine>>10)

// errLiteralRefused is the failure of a server that does not honour the
// non-synchronizing literals it advertises.
var errLiteralRefused = errors.New("it advertises non-synchronizing literals (LITERAL+, LITERAL-, RFC 7888) but does not honour them")

// literalRefusedError says how the server showed that it does not
// honour non-synchronizing literals.
type literalRefusedError struct{ how string }

func (e *literalRefusedError) Error() string {
	return errLiteralRefused.Error() + ": " + e.how + "; the connection was closed at once"
}
func (e *literalRefusedError) Unwrap() error { return errLiteralRefused }

// maxLiteralLine bounds a client line held back to look at its end;
// longer ones pass through as they come.
const maxLiteralLine = 64 << 10

// literalMinusMax is the largest non-synchronizing literal of LITERAL-
// (RFC 7888 section 4) and IMAP4rev2 (RFC 9051 section 4.3).
const literalMinusMax = 4096

func newLiteralPlusConn(c net.Conn, greeting string) *literalPlusConn {
	l := &literalPlusConn{Conn: c, ready: make(chan struct{}, 1), chunks: make(chan readChunk, 4), done: make(chan struct{}),
		dead: make(chan struct{}), nonSync: map[string]bool{}}
	l.inject = []byte(greeting)
	return l
}

// arm starts the checks of the server's answers: from here on, a "+"
// that no literal asked for and a BAD to a non-synchronizing literal end
// the session. Call it after login (AUTHENTICATE has "+" of its own),
// with no command in flight. Literals go synchronizing from the first
// command on, LOGIN's too, until trust.
func (l *literalPlusConn) arm() { l.armed.Store(true) }

// trust lets literals up to max octets go non-synchronizing.
func (l *literalPlusConn) trust(max int64) {
	l.arm()
	l.nonSyncMax.Store(max)
}

// probe makes the next client line that ends in the quoted argument
// quoted a command with a non-synchronizing literal holding lit instead.
// lit must be harmless read as a command line (no SP, no CR or LF): a
// server that does not honour the literal then answers BAD to it, and
// nothing of a message's has been sent.
func (l *literalPlusConn) probe(quoted, lit string) {
	l.wmu.Lock()
	l.probeQ, l.probeLt = []byte(quoted), []byte(lit)
	l.wmu.Unlock()
}

// pump reads the server's octets for Read, so that Read can also wait
// for a local response.
func (l *literalPlusConn) pump() {
	for {
		b := make([]byte, 32<<10)
		n, err := l.Conn.Read(b)
		select {
		case l.chunks <- readChunk{b[:n], err}:
		case <-l.done:
			return
		}
		if err != nil {
			close(l.chunks)
			return
		}
	}
}

// Close implements net.Conn.
func (l *literalPlusConn) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Conn.Close()
}

// setErr makes err what every later Read returns. l.rmu is held.
func (l *literalPlusConn) setErr(err error) {
	if l.rerr == nil {
		l.rerr = err
		close(l.dead)
	}
	if l.hold != nil {
		l.hold <- err
		l.hold = nil
	}
}

// refused returns the failure of a server that did not honour a
// non-synchronizing literal, or nil. l may be nil.
func (l *literalPlusConn) refused() error {
	if l == nil {
		return nil
	}
	l.rmu.Lock()
	defer l.rmu.Unlock()
	var re *literalRefusedError
	if errors.As(l.rerr, &re) {
		return re
	}
	return nil
}

// refuse fails the session: the server does not honour a
// non-synchronizing literal. The connection is closed at once, so that
// nothing more is written to it. l.rmu is held.
func (l *literalPlusConn) refuse(how string) {
	l.rbuf = nil
	l.setErr(&literalRefusedError{how: how})
	l.broken.Store(true)
	// Not under l.rmu: a TLS Close may wait for a Write in progress.
	go l.Conn.Close()
}

// Read implements net.Conn for go-imap: the server's octets, with the
// local "+" lines put in between two responses.
func (l *literalPlusConn) Read(p []byte) (int, error) {
	l.rmu.Lock()
	if !l.started {
		l.started = true
		go l.pump()
	}
	l.rmu.Unlock()
	for {
		l.rmu.Lock()
		boundary := l.rlit == 0 && len(l.rline) == 0 && l.rlen == 0
		if boundary && len(l.inject) > 0 && l.rerr == nil {
			n := copy(p, l.inject)
			l.inject = l.inject[n:]
			l.rmu.Unlock()
			return n, nil
		}
		if len(l.rbuf) > 0 {
			n := l.take(p, len(l.inject) > 0)
			if n > 0 {
				l.rmu.Unlock()
				return n, nil
			}
			if l.rerr != nil {
				err := l.rerr
				l.rmu.Unlock()
				return 0, err
			}
			// Nothing to return: a "+" to take out is not complete
			// yet, or the session failed.
		}
		if l.rerr != nil && (len(l.rbuf) == 0 || l.rerr == errResponseLine) {
			err := l.rerr
			l.rmu.Unlock()
			return 0, err
		}
		l.rmu.Unlock()
		select {
		case c, ok := <-l.chunks:
			l.rmu.Lock()
			if !ok {
				l.setErr(net.ErrClosed)
			} else {
				l.rbuf = append(l.rbuf, c.b...)
				if c.err != nil {
					l.setErr(c.err)
				}
			}
			l.rmu.Unlock()
		case <-l.ready:
		case <-l.done:
			return 0, net.ErrClosed
		}
	}
}

// take moves server octets from rbuf to p, following lines and
// literals; with stop, it stops at the end of a response, where a local
// one is waiting. l.rmu is held.
func (l *literalPlusConn) take(p []byte, stop bool) int {
	n := 0
	for n < len(p) && len(l.rbuf) > 0 {
		if l.rlit > 0 {
			k := int(min(l.rlit, int64(len(p)-n), int64(len(l.rbuf))))
			copy(p[n:], l.rbuf[:k])
			l.rbuf, l.rlit, n = l.rbuf[k:], l.rlit-int64(k), n+k
			continue
		}
		if l.rlen == 0 && !l.rcont && l.rbuf[0] == '+' && (l.hold != nil || l.expectPlus > 0 || l.armed.Load()) {
			switch {
			case l.hold != nil:
				// The "+" the shim asked for in go-imap's stead:
				// go-imap does not expect it.
				i := bytes.IndexByte(l.rbuf, '\n')
				if i < 0 {
					if len(l.rbuf) > maxResponseLine {
						l.rbuf = nil
						l.setErr(errResponseLine)
					}
					return n
				}
				l.rbuf = l.rbuf[i+1:]
				l.hold <- nil
				l.hold = nil
				continue
			case l.expectPlus > 0:
				l.expectPlus--
			default:
				l.refuse("it sent a continuation request (\"+\") that no synchronizing literal asked for")
				return n
			}
		}
		c := l.rbuf[0]
		if l.rlen++; l.rlen > maxResponseLine {
			// What was read stays unread: go-imap sees the error at
			// its next read, without the line's end.
			l.rbuf = nil
			l.setErr(errResponseLine)
			break
		}
		p[n] = c
		l.rbuf, n = l.rbuf[1:], n+1
		if c != '\n' {
			if len(l.rline) < 32 {
				l.rline = append(l.rline, c)
			} else {
				l.rline = append(l.rline[1:], c)
			}
			if len(l.rhead) < 64 {
				l.rhead = append(l.rhead, c)
			}
			continue
		}
		if !l.rcont {
			if l.checkTagged() {
				return n
			}
		}
		cont := l.rcont
		l.rlit, l.rcont = announced(l.rline)
		if !cont && len(l.rhead) > 0 && textOnly(l.rhead) {
			// go-imap reads no literal in a status response's text,
			// nor in a "+": neither does the shim.
			l.rlit, l.rcont = 0, false
		}
		l.rline, l.rhead, l.rlen = l.rline[:0], l.rhead[:0], 0
		if l.rcont {
			// The response goes on after the literal (an empty one
			// too): not a boundary until its line ends.
			l.rline = append(l.rline, '{')
		}
		if stop && !l.rcont {
			break
		}
	}
	return n
}

// checkTagged looks at a complete line of the server's (rhead): a
// tagged answer to a command sent with a non-synchronizing literal, or
// to one whose literal the shim holds back. It reports whether the
// session failed. l.rmu is held.
func (l *literalPlusConn) checkTagged() bool {
	tag, rest, _ := strings.Cut(string(l.rhead), " ")
	if tag == "*" || tag == "+" {
		return false
	}
	status, _, _ := strings.Cut(rest, " ")
	status = strings.ToUpper(strings.TrimRight(status, "\r"))
	if l.hold != nil && tag == l.holdTag {
		// Refused before the literal: its octets are not sent.
		l.hold <- fmt.Errorf("the server answered %s before the literal", status)
		l.hold = nil
	}
	if !l.nonSync[tag] {
		return false
	}
	delete(l.nonSync, tag)
	if status == "BAD" {
		// The server may be reading the literal's lines as commands.
		l.refuse(fmt.Sprintf("it answered BAD to command %.40s, sent with a non-synchronizing literal", tag))
		return true
	}
	return false
}

// textOnly reports whether a server's line that begins with head (not
// the rest of a line after a literal) ends in text that go-imap reads
// to the line's end, literals and all: a continuation request, or a
// status response (OK, NO, BAD, BYE, PREAUTH; resp-text, RFC 3501).
func textOnly(head []byte) bool {
	if head[0] == '+' {
		return true
	}
	_, rest, _ := strings.Cut(string(head), " ")
	word, _, _ := strings.Cut(rest, " ")
	switch strings.ToUpper(strings.TrimRight(word, "\r")) {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
		return true
	}
	return false
}

// literalAt returns the size of the literal a line announces at its end
// ("{N}\r" or "{N+}\r", the LF taken off), or 0 (see announced).
func literalAt(line []byte) int64 {
	n, _ := announced(line)
	return n
}

// announced returns the size of the literal a line announces at its
// end, and whether it announces one: "{0}" does, and the command or
// response goes on after it (a synchronizing one waits for a "+" like
// any other).
func announced(line []byte) (int64, bool) {
	s := strings.TrimSuffix(string(line), "\r")
	if !strings.HasSuffix(s, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(s, '{')
	if i < 0 {
		return 0, false
	}
	num := strings.TrimSuffix(strings.TrimSuffix(s[i+1:len(s)-1], "+"), "-")
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// writeErr returns the first failure of a Write, or nil. go-imap
// (v2.0.0-beta.8) does not return the failure of the flush that ends a
// command: it closes the connection, and a command whose answer was
// read first (an APPEND answered OK before the "+" its held literal
// waited for) keeps that answer, its message never sent. l may be nil.
func (l *literalPlusConn) writeErr() error {
	if l == nil {
		return nil
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	return l.werr
}

// Write implements net.Conn for go-imap: its octets, each literal's
// announcement made synchronizing or not as the server has earned (see
// literalPlusConn).
func (l *literalPlusConn) Write(p []byte) (n int, err error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	defer func() {
		if err != nil && l.werr == nil {
			l.werr = err
		}
	}()
	if l.broken.Load() {
		return 0, l.refused()
	}
	out := l.wbuf[:0]
	rest := p
	for len(rest) > 0 {
		if l.wlit > 0 {
			k := int(min(l.wlit, int64(len(rest))))
			out = append(out, rest[:k]...)
			rest, l.wlit = rest[k:], l.wlit-int64(k)
			continue
		}
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			l.wline = append(l.wline, rest...)
			rest = nil
			if len(l.wline) > maxLiteralLine {
				out, l.wline = append(out, l.wline...), l.wline[:0]
			}
			break
		}
		line := append(l.wline, rest[:i+1]...)
		rest = rest[i+1:]
		if !l.wcont {
			l.wtag, _, _ = strings.Cut(string(line), " ")
		}
		if l.probeQ != nil && bytes.HasSuffix(line, append(append([]byte(" "), l.probeQ...), "\r\n"...)) {
			// The probe: its argument as a non-synchronizing literal.
			line = append(line[:len(line)-len(l.probeQ)-2], fmt.Sprintf("{%d+}\r\n", len(l.probeLt))...)
			line = append(append(line, l.probeLt...), "\r\n"...)
			l.probeQ, l.probeLt = nil, nil
			l.rmu.Lock()
			l.nonSync[l.wtag] = true
			l.rmu.Unlock()
			out = append(out, line...)
			l.wline, l.wcont = line[:0], false
			continue
		}
		n, lit := announced(line[:len(line)-1])
		l.wcont = lit
		if lit && bytes.HasSuffix(line, []byte("}\r\n")) {
			var err error
			if out, err = l.literal(out, line, n); err != nil {
				l.wbuf = out[:0]
				return 0, err
			}
			l.wlit = n
			l.wline = line[:0]
			continue
		}
		l.wlit = n
		out = append(out, line...)
		l.wline = line[:0]
	}
	l.wbuf = out
	if l.broken.Load() {
		return 0, l.refused()
	}
	if len(out) > 0 {
		if _, err := l.Conn.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// literal appends to out the announcement of an n-octet literal that
// ends line, synchronizing or not, and returns out. A non-synchronizing
// one of go-imap's that must go synchronizing is sent, with all before
// it, and Write waits for the server's "+" before the octets. l.wmu is
// held.
func (l *literalPlusConn) literal(out, line []byte, n int64) ([]byte, error) {
	nonSync := bytes.HasSuffix(line, []byte("+}\r\n"))
	l.rmu.Lock()
	defer l.rmu.Unlock()
	if l.rerr != nil {
		return out, l.rerr
	}
	if limit := l.nonSyncMax.Load(); limit > 0 && n <= limit {
		if !nonSync {
			line = append(line[:len(line)-3], "+}\r\n"...)
			// go-imap waits for a "+": it gets one, made here.
			l.inject = append(l.inject, "+ popfetch: LITERAL+\r\n"...)
			select {
			case l.ready <- struct{}{}:
			default:
			}
		}
		l.nonSync[l.wtag] = true
		return append(out, line...), nil
	}
	if !nonSync {
		// go-imap waits for the server's "+" itself.
		l.expectPlus++
		return append(out, line...), nil
	}
	line = append(line[:len(line)-4], "}\r\n"...)
	out = append(out, line...)
	ch := make(chan error, 1)
	l.hold, l.holdTag = ch, l.wtag
	l.rmu.Unlock()
	_, err := l.Conn.Write(out)
	if err == nil {
		select {
		case err = <-ch:
		case <-l.done:
			err = net.ErrClosed
		}
	}
	l.rmu.Lock()
	if l.hold == ch {
		l.hold = nil
	}
	if err != nil {
		return out[:0], fmt.Errorf("a synchronizing literal: %w", err)
	}
	return out[:0], nil
}

// startTLS upgrades c the IMAP way (RFC 9051 section 6.2.1) before
// go-imap takes it: greeting, STARTTLS, its OK, and not one octet more
// (which would be an injection in the clear).
func startTLS(c net.Conn) error {
	br := bufio.NewReaderSize(c, 4096)
	line := func() (string, error) {
		s, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return "", errors.New("STARTTLS: a response line too long")
			}
			return "", fmt.Errorf("STARTTLS: %w", err)
		}
		return strings.TrimRight(string(s), "\r\n"), nil
	}
	g, err := line()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return &noGreetingError{err}
		}
		return err
	}
	if !strings.HasPrefix(g, "* OK") {
		err := fmt.Errorf("STARTTLS: the greeting is not OK: %.100q", g)
		if strings.HasPrefix(g, "+OK") {
			return &pop3GreetingError{err}
		}
		return err
	}
	if _, err := c.Write([]byte("S1 STARTTLS\r\n")); err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	for {
		s, err := line()
		if err != nil {
			return err
		}
		if strings.HasPrefix(s, "* ") {
			continue
		}
		if !strings.HasPrefix(s, "S1 OK") {
			return fmt.Errorf("STARTTLS refused: %.200q", s)
		}
		break
	}
	if br.Buffered() > 0 {
		return errors.New("STARTTLS: the server sent more after its OK: refused (an injection?)")
	}
	return nil
}

// noGreetingError is a greeting that did not come in time: the most
// common cause is tls = "starttls" on an IMAPS port, which waits for a
// TLS handshake before it says anything.
type noGreetingError struct{ err error }

func (e *noGreetingError) Error() string { return e.err.Error() }
func (e *noGreetingError) Unwrap() error { return e.err }

// pop3GreetingError is a greeting of a POP3 server's ("+OK"): the
// port is the POP3 server's, not the IMAP server's.
type pop3GreetingError struct{ err error }

func (e *pop3GreetingError) Error() string { return e.err.Error() }
func (e *pop3GreetingError) Unwrap() error { return e.err }
