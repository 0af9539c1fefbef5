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
// makes APPEND's literals non-synchronizing (RFC 7888, LITERAL+) when the
// server offers it. go-imap (v2.0.0-beta.8) sends every literal over 4096
// octets as a synchronizing one, and waits for the server's "+" before the
// message: a round trip per message. Here a client line that ends in
// "{N}" is sent as "{N+}" and the "+" go-imap waits for is answered
// locally, at once: the APPENDs of a batch then go out back to back and
// their answers come in together.
//
// Both streams are followed (lines, and the literals they announce) so
// that a message's own octets are never mistaken for a literal's
// announcement, and the local "+" is handed to go-imap only between two
// of the server's responses.
type literalPlusConn struct {
	net.Conn
	enabled atomic.Bool // the server offers LITERAL+

	wmu   sync.Mutex
	wline []byte // the client's current line, held until its end
	wlit  int64  // literal octets still to pass through unchanged
	wbuf  []byte

	rmu     sync.Mutex
	ready   chan struct{} // signalled when inject grows
	inject  []byte        // local responses for go-imap, at the next boundary
	rbuf    []byte        // server octets read, not yet returned
	rerr    error
	rline   []byte // the tail of the server's current line
	rlen    int    // octets of the server's current line so far
	rlit    int64  // literal octets of the server's still to come
	chunks  chan readChunk
	started bool

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

// maxLiteralLine bounds a client line held back to look at its end;
// longer ones pass through as they come.
const maxLiteralLine = 64 << 10

func newLiteralPlusConn(c net.Conn, greeting string) *literalPlusConn {
	l := &literalPlusConn{Conn: c, ready: make(chan struct{}, 1), chunks: make(chan readChunk, 4), done: make(chan struct{})}
	l.inject = []byte(greeting)
	return l
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
		boundary := l.rlit == 0 && len(l.rline) == 0
		if boundary && len(l.inject) > 0 {
			n := copy(p, l.inject)
			l.inject = l.inject[n:]
			l.rmu.Unlock()
			return n, nil
		}
		if len(l.rbuf) > 0 && l.rerr != errResponseLine {
			n := l.take(p, len(l.inject) > 0)
			if n == 0 && l.rerr != nil {
				err := l.rerr
				l.rmu.Unlock()
				return 0, err
			}
			l.rmu.Unlock()
			return n, nil
		}
		if l.rerr != nil {
			err := l.rerr
			l.rmu.Unlock()
			return 0, err
		}
		l.rmu.Unlock()
		select {
		case c, ok := <-l.chunks:
			l.rmu.Lock()
			if !ok {
				if l.rerr == nil {
					l.rerr = net.ErrClosed
				}
			} else {
				l.rbuf = append(l.rbuf, c.b...)
				if c.err != nil {
					l.rerr = c.err
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
		c := l.rbuf[0]
		if l.rlen++; l.rlen > maxResponseLine {
			// What was read stays unread: go-imap sees the error at
			// its next read, without the line's end.
			l.rbuf, l.rerr = nil, errResponseLine
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
			continue
		}
		l.rlit = literalAt(l.rline)
		l.rline, l.rlen = l.rline[:0], 0
		if l.rlit > 0 {
			// The response goes on after the literal: not a boundary
			// until its line ends.
			l.rline = append(l.rline, '{')
		}
		if stop && l.rlit == 0 {
			break
		}
	}
	return n
}

// literalAt returns the size of the literal a line announces at its end
// ("{N}\r" or "{N+}\r", the LF taken off), or 0.
func literalAt(line []byte) int64 {
	s := strings.TrimSuffix(string(line), "\r")
	if !strings.HasSuffix(s, "}") {
		return 0
	}
	i := strings.LastIndexByte(s, '{')
	if i < 0 {
		return 0
	}
	num := strings.TrimSuffix(strings.TrimSuffix(s[i+1:len(s)-1], "+"), "-")
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Write implements net.Conn for go-imap: its octets, with a synchronizing
// literal's announcement made non-synchronizing where the server offers
// LITERAL+ (and the "+" answered locally).
func (l *literalPlusConn) Write(p []byte) (int, error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
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
		n := literalAt(line[:len(line)-1])
		if n > 0 && l.enabled.Load() && bytes.HasSuffix(line, []byte("}\r\n")) && !bytes.HasSuffix(line, []byte("+}\r\n")) {
			line = append(line[:len(line)-3], "+}\r\n"...)
			l.rmu.Lock()
			l.inject = append(l.inject, "+ popfetch: LITERAL+\r\n"...)
			l.rmu.Unlock()
			select {
			case l.ready <- struct{}{}:
			default:
			}
		}
		l.wlit = n
		out = append(out, line...)
		l.wline = line[:0]
	}
	l.wbuf = out
	if len(out) > 0 {
		if _, err := l.Conn.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
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
