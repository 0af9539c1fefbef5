package deliver

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/popfetch/popfetch/fetch/termsafe"
)

// maxTraceLine bounds a line of the IMAP trace: the rest of a longer line
// is counted, not shown. A FETCH of many UIDs or a long CAPABILITY fits.
const maxTraceLine = 1000

// maxClientTraceLine is how much of a line of the client's the trace
// keeps: a SASL response (an OAuth2 token of a few KiB, in base64) is
// kept whole, to be hidden wherever the server echoes it.
const maxClientTraceLine = 16 << 10

// traceTail is how many of a line's last octets the trace keeps to read
// the literal it announces ("{4294967295+}" and its line end fit).
const traceTail = 32

// maxTraceSecrets bounds the secrets a trace replaces: the password and
// its quoted form, a token, a few SASL responses. More would be a
// mechanism with many rounds; their responses are redacted as they are
// sent all the same.
const maxTraceSecrets = 16

// minTraceSecret is the shortest secret imapTrace.redact acts on, as in
// the POP3 client: replacing every "a" of the server's lines would only
// garble them.
const minTraceSecret = 4

// imapTrace writes the protocol trace of one IMAP session: a line "C: ..."
// for each line the client sends and "S: ..." for each line the server
// sends, the format of the POP3 trace. It is fed the octets of both
// streams as they pass (traceConn) and follows each one on its own, line
// by line and literal by literal, so what it shows does not depend on how
// the octets were cut into writes and reads, and a line is written to w
// whole, in one Write. It is safe to show by construction, as the POP3
// trace is:
//
//   - LOGIN's arguments are never shown, nor its literals (not even their
//     sizes: the length of a password is a clue): "C: A1 LOGIN <redacted>".
//   - From an AUTHENTICATE to the server's tagged response to it, nothing
//     the client sends is shown: the command's line keeps its tag and
//     mechanism ("<initial response redacted>" in place of SASL-IR), and
//     each continuation answer is "<SASL response redacted>" ("*", a
//     cancel, is shown).
//   - A literal's octets are never shown: APPEND's are summed up as
//     "<N octets of message data>", as RETR's are on the POP3 side, and
//     other literals (of either side) as "<literal of N octets>".
//   - Each line is cut after maxTraceLine octets, marked with its whole
//     length; what a terminal would act on (ESC, NUL, CR, ...) is escaped
//     (termsafe.String); the secrets given to redact, and the SASL
//     responses sent, are replaced wherever they appear, a server's
//     echo included.
//
// It is safe for the concurrent use of a session's reader and writer.
type imapTrace struct {
	mu      sync.Mutex
	w       io.Writer
	secrets []string
	keep    int // octets of a line kept: maxTraceLine and the longest secret
	c, s    traceStream
	// authTag is the tag of the AUTHENTICATE in progress, "" if none:
	// set when the client's command line ends, cleared by the server's
	// tagged response.
	authTag string
	// saslOwed: the server sent a "+" during that AUTHENTICATE that the
	// client has not answered yet. The client may answer it after the
	// server's tagged response (go-imap does, to a server that sends
	// both at once), and that answer is a SASL response all the same.
	saslOwed bool
}

// traceStream is one direction of the session, as the trace follows it.
type traceStream struct {
	side string // "C" or "S"
	line []byte // the current line, its first keep octets
	n    int64  // octets of the current line so far
	tail []byte // the line's last octets, where a literal is announced
	lit  int64  // literal octets still to come
	size int64  // the size of that literal
	cont bool   // the current line goes on after a literal
	verb string // the client's command the line belongs to, in upper case
}

func newIMAPTrace(w io.Writer) *imapTrace {
	return &imapTrace{w: w, keep: maxTraceLine,
		c: traceStream{side: "C", tail: make([]byte, 0, traceTail)}, s: traceStream{side: "S", tail: make([]byte, 0, traceTail)}}
}

// redact makes the trace replace secret wherever it appears, as it is
// and as the inside of an IMAP quoted string: call it before the secret
// is sent.
func (t *imapTrace) redact(secret string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addSecret(secret)
	t.addSecret(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(secret))
}

// addSecret adds one secret to those replaced. t.mu is held.
func (t *imapTrace) addSecret(secret string) {
	if len(secret) < minTraceSecret || len(t.secrets) >= maxTraceSecrets {
		return
	}
	for _, s := range t.secrets {
		if s == secret {
			return
		}
	}
	t.secrets = append(t.secrets, secret)
	t.keep = max(t.keep, maxTraceLine+len(secret))
}

// client takes octets the client sends.
func (t *imapTrace) client(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.feed(&t.c, p)
}

// server takes octets the server sent.
func (t *imapTrace) server(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.feed(&t.s, p)
}

// close writes what is left of either stream: the connection is closing.
func (t *imapTrace) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, d := range []*traceStream{&t.c, &t.s} {
		if d.lit > 0 {
			t.literalDone(d, fmt.Sprintf(", incomplete: %d missing", d.lit))
			d.lit = 0
		}
		if d.n > 0 {
			t.lineDone(d, " (no line end)")
		}
	}
}

// feed follows one stream. t.mu is held.
func (t *imapTrace) feed(d *traceStream, p []byte) {
	for len(p) > 0 {
		if d.lit > 0 {
			k := min(d.lit, int64(len(p)))
			p, d.lit = p[k:], d.lit-k
			if d.lit == 0 {
				t.literalDone(d, "")
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i+1]
		}
		p = p[len(chunk):]
		keep := t.keep
		if d.side == "C" {
			keep = max(keep, maxClientTraceLine)
		}
		if room := keep - len(d.line); room > 0 {
			d.line = append(d.line, chunk[:min(room, len(chunk))]...)
		}
		d.n += int64(len(chunk))
		if len(chunk) >= traceTail {
			d.tail = append(d.tail[:0], chunk[len(chunk)-traceTail:]...)
		} else {
			if over := len(d.tail) + len(chunk) - traceTail; over > 0 {
				d.tail = d.tail[:copy(d.tail, d.tail[over:])]
			}
			d.tail = append(d.tail, chunk...)
		}
		if i >= 0 {
			t.lineDone(d, "")
		}
	}
}

// lineDone writes the line of d just ended (or cut off, with note) and
// reads the literal it announces. t.mu is held.
func (t *imapTrace) lineDone(d *traceStream, note string) {
	text := strings.TrimRight(string(d.line), "\r\n")
	cut := d.n > int64(len(d.line))
	lit := literalAt(bytes.TrimSuffix(d.tail, []byte("\n")))
	if note != "" {
		lit = 0 // no line end: no literal follows
	}
	var show string
	ok := true
	if d.side == "C" {
		show, ok, lit = t.clientLine(d, text, cut, lit)
	} else {
		show = text
		if !d.cont && t.authTag != "" && strings.HasPrefix(text, "+") {
			t.saslOwed = true
		}
		if !d.cont && t.authTag != "" && strings.HasPrefix(text, t.authTag+" ") {
			t.authTag = ""
		}
	}
	if ok {
		t.write(d.side, show, cut, d.n, note)
	}
	d.line, d.n, d.tail = d.line[:0], 0, d.tail[:0]
	d.lit, d.size, d.cont = lit, lit, lit > 0
	if !d.cont {
		d.verb = ""
	}
}

// clientLine returns what the trace shows of a line of the client's
// (ok false: nothing; cut: the line was longer than kept), and the size
// of the literal it announces as the trace follows it. t.mu is held.
func (t *imapTrace) clientLine(d *traceStream, text string, cut bool, lit int64) (show string, ok bool, _ int64) {
	if (t.authTag != "" || t.saslOwed) && !d.cont {
		// A SASL response (a base64 line, never a literal): hidden
		// here, and wherever the server echoes it. One owed after the
		// exchange ended may be a command line instead: its literal
		// is followed all the same.
		if t.authTag != "" {
			lit = 0
		}
		t.saslOwed = false
		if text == "*" {
			return "*", true, 0
		}
		if !cut {
			t.addSecret(text)
		}
		return "<SASL response redacted>", true, lit
	}
	if d.cont {
		// The command goes on after a literal.
		if d.verb == "LOGIN" {
			return "", false, lit
		}
		return text, strings.TrimSpace(text) != "", lit
	}
	f := strings.Fields(text)
	if len(f) < 2 {
		return text, true, lit
	}
	d.verb = strings.ToUpper(f[1])
	switch d.verb {
	case "LOGIN":
		return f[0] + " " + f[1] + " <redacted>", true, lit
	case "AUTHENTICATE":
		t.authTag = f[0]
		show = strings.Join(f[:min(3, len(f))], " ")
		switch {
		case len(f) < 4:
		case f[3] == "=":
			show += " =" // empty: nothing to hide
		default:
			show += " <initial response redacted>"
			if !cut {
				t.addSecret(f[3])
			}
		}
		return show, true, 0
	}
	return text, true, lit
}

// literalDone writes the summary of the literal of d just passed. t.mu
// is held.
func (t *imapTrace) literalDone(d *traceStream, note string) {
	switch {
	case d.side == "C" && d.verb == "LOGIN":
		// Not even its size.
	case d.side == "C" && d.verb == "APPEND":
		t.write(d.side, fmt.Sprintf("<%d octets of message data%s>", d.size, note), false, 0, "")
	default:
		t.write(d.side, fmt.Sprintf("<literal of %d octets%s>", d.size, note), false, 0, "")
	}
}

// write writes one line of the trace: side, text with the secrets
// replaced, cut to maxTraceLine and escaped. A line cut already (cut) or
// here is marked with its length on the wire, whole. t.mu is held.
func (t *imapTrace) write(side, text string, cut bool, whole int64, note string) {
	if len(text) > maxTraceLine {
		// Cut before the secrets are replaced, in the octets that
		// came: cut after, a replacement that shortened the line would
		// pull in the part of a later echo that was kept (t.keep). An
		// echo that begins within the part shown is kept whole, to be
		// replaced; one that begins after it is not shown at all.
		end := maxTraceLine
		for _, s := range t.secrets {
			for i := 0; i < maxTraceLine; {
				j := strings.Index(text[i:], s)
				if j < 0 || i+j >= maxTraceLine {
					break
				}
				end = max(end, i+j+len(s))
				i += j + 1
			}
		}
		if end < len(text) {
			cut, text = true, text[:end]
		}
	}
	for _, s := range t.secrets {
		text = strings.ReplaceAll(text, s, "<redacted>")
	}
	if len(text) > maxTraceLine {
		// No secret is left to cut into.
		cut, text = true, text[:maxTraceLine]
	}
	line := side + ": " + termsafe.String(text)
	if cut {
		line += fmt.Sprintf(" ...(cut: a line of %d octets)", whole)
	}
	// A trace that cannot be written does not stop the delivery.
	io.WriteString(t.w, line+note+"\n")
}

// traceConn passes the octets of a connection through an imapTrace: the
// client's before they are sent (so that an AUTHENTICATE is known before
// the server can answer it), the server's as they are read.
type traceConn struct {
	net.Conn
	t *imapTrace
}

func (c *traceConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.t.server(p[:n])
	return n, err
}

func (c *traceConn) Write(p []byte) (int, error) {
	c.t.client(p)
	return c.Conn.Write(p)
}

// Close implements net.Conn: the trace shows what is left of a line.
func (c *traceConn) Close() error {
	c.t.close()
	return c.Conn.Close()
}
