// Package pop3 is a POP3 client: RFC 1939 (the protocol), RFC 2449 (CAPA,
// response codes), RFC 2595 (STLS) and RFC 3206 (SYS and AUTH codes).
//
// It knows nothing of accounts, UID caches or delivery. Every blocking call
// takes a context; every read and write is bounded by an idle timeout;
// status and listing lines are bounded in length; messages are streamed.
// A Client is not safe for concurrent use.
package pop3

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultTimeout bounds each read and write when Options.Timeout is zero.
const DefaultTimeout = 60 * time.Second

// Options configure a Client. The zero value is usable.
type Options struct {
	// Timeout bounds every single read and write on the connection: a
	// server that sends nothing for this long fails the call. Zero means
	// DefaultTimeout.
	Timeout time.Duration

	// Debug, if set, receives a protocol trace: "C: " lines sent and "S: "
	// lines received. Passwords and APOP digests are redacted; message
	// bodies are summarised by their size.
	Debug io.Writer
}

// Client is a connection to a POP3 server.
type Client struct {
	addr  string // the server's host:port, for messages
	tc    *timeoutConn
	conn  net.Conn // tc, or a TLS connection over it
	r     *bufio.Reader
	w     *bufio.Writer
	debug io.Writer

	greeting  string
	timestamp string // the APOP timestamp from the greeting, "" if none or malformed
	caps      Capabilities
	tls       bool
	open      *MessageReader // the multi-line response being read, if any
	pipe      *Pipeline      // the pipeline in use, if any
	broken    error          // set once the connection cannot be trusted
	traceMu   sync.Mutex
	secrets   []string // what Redact was given, replaced in traces and -ERR texts
}

// minRedacted is the shortest secret Redact acts on: replacing every "a"
// of a server's replies would only garble them.
const minRedacted = 4

// Redact makes the client replace secret wherever the server echoes it:
// in the trace and in the text of *Error replies. A server may quote the
// password it refused ("-ERR password s3cret is wrong"), and that reply
// is logged. Call it before sending the secret.
func (c *Client) Redact(secret string) {
	if len(secret) < minRedacted || slices.Contains(c.secrets, secret) {
		return
	}
	c.traceMu.Lock()
	c.secrets = append(c.secrets, secret)
	c.traceMu.Unlock()
}

// redacted returns s with every secret given to Redact replaced.
func (c *Client) redacted(s string) string {
	for _, sec := range c.secrets {
		s = strings.ReplaceAll(s, sec, "<redacted>")
	}
	return s
}

// Dial connects to addr over plain TCP and reads the greeting.
func Dial(ctx context.Context, addr string, opts *Options) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, dialErr(addr, err)
	}
	c := newClient(conn, opts, addr)
	stop := c.tc.watch(ctx)
	defer stop()
	if err := c.readGreeting(); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// DialTLS connects to addr with implicit TLS (POP3S, usually port 995),
// completes the handshake with cfg and reads the greeting.
func DialTLS(ctx context.Context, addr string, cfg *tls.Config, opts *Options) (*Client, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, dialErr(addr, err)
	}
	c := newClient(raw, opts, addr)
	stop := c.tc.watch(ctx)
	defer stop()
	tconn := tls.Client(c.tc, cfg)
	if err := tconn.HandshakeContext(ctx); err != nil {
		raw.Close()
		if isTimeout(err) {
			return nil, c.timeoutErr("the TLS handshake", err)
		}
		return nil, &TLSError{Err: err}
	}
	c.setConn(tconn)
	c.tls = true
	if err := c.readGreeting(); err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

// NewClient reads the greeting from an established connection. The client
// owns conn from then on, even when an error is returned.
func NewClient(ctx context.Context, conn net.Conn, opts *Options) (*Client, error) {
	c := newClient(conn, opts, conn.RemoteAddr().String())
	_, c.tls = conn.(*tls.Conn)
	stop := c.tc.watch(ctx)
	defer stop()
	if err := c.readGreeting(); err != nil {
		return nil, err
	}
	return c, nil
}

// dialErr is the error of a connection that could not be made to addr.
func dialErr(addr string, err error) error {
	if isTimeout(err) {
		return &TimeoutError{Addr: addr, Doing: "connecting", Err: err}
	}
	return fmt.Errorf("pop3: %w", err)
}

func newClient(conn net.Conn, opts *Options, addr string) *Client {
	if opts == nil {
		opts = &Options{}
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	c := &Client{addr: addr, tc: &timeoutConn{Conn: conn, timeout: timeout}, debug: opts.Debug}
	c.setConn(c.tc)
	return c
}

// setConn makes conn the connection the client reads and writes. After
// STLS, or the handshake of implicit TLS, the buffers (empty then) are
// kept: one connection allocates them once.
func (c *Client) setConn(conn net.Conn) {
	c.conn = conn
	if c.r == nil {
		c.r = bufio.NewReaderSize(&dataReader{r: conn, tc: c.tc}, 32<<10)
		c.w = bufio.NewWriterSize(conn, 4<<10)
		return
	}
	c.r.Reset(&dataReader{r: conn, tc: c.tc})
	c.w.Reset(conn)
}

func (c *Client) readGreeting() error {
	line, err := c.readStatus("greeting", "")
	if err != nil {
		return err
	}
	c.greeting = line
	c.timestamp = apopTimestamp(line)
	return nil
}

// TLSError reports a failed TLS handshake, including certificate
// verification failures.
type TLSError struct {
	Err error
}

func (e *TLSError) Error() string { return "pop3: TLS handshake: " + e.Err.Error() }
func (e *TLSError) Unwrap() error { return e.Err }

// Greeting returns the text of the server's +OK greeting.
func (c *Client) Greeting() string { return c.greeting }

// APOPTimestamp returns the timestamp of the greeting that APOP needs, or ""
// if the server sent none or one that is not of the form <local@domain>.
func (c *Client) APOPTimestamp() string { return c.timestamp }

// RemoteAddr returns the server's network address.
func (c *Client) RemoteAddr() net.Addr { return c.tc.RemoteAddr() }

// IsTLS reports whether the connection is encrypted.
func (c *Client) IsTLS() bool { return c.tls }

// TLSConnectionState returns the state of the TLS connection, if any.
func (c *Client) TLSConnectionState() (tls.ConnectionState, bool) {
	if t, ok := c.conn.(*tls.Conn); ok {
		return t.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// Close closes the connection without sending QUIT. Messages marked for
// deletion stay on the server.
func (c *Client) Close() error {
	c.broken = ErrClosed
	return c.conn.Close()
}

// Capabilities is the answer to CAPA: each capability name (upper case)
// with its arguments.
type Capabilities map[string][]string

// Has reports whether the server advertised the capability name.
func (caps Capabilities) Has(name string) bool {
	_, ok := caps[asciiUpper(name)]
	return ok
}

// asciiUpper upper-cases ASCII letters only: capability names and SASL
// mechanisms are ASCII and compared without regard to ASCII case (RFC
// 2449); Unicode case mapping would make a name unequal to itself after
// a round trip (found by FuzzCapa with U+0130).
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// add records one line of a CAPA listing: a capability name, which is
// case-insensitive, and its arguments.
func (caps Capabilities) add(line string) {
	f := strings.Fields(line)
	if len(f) > 0 {
		caps[asciiUpper(f[0])] = f[1:]
	}
}

// MaxCapabilities bounds the lines of a CAPA answer: RFC 2449 servers
// list about a dozen; each line is kept, so a listing of MaxListingLines
// would hold half a gigabyte.
const MaxCapabilities = 1000

// Capa asks the server for its capabilities (RFC 2449). A server that does
// not know CAPA answers -ERR; that is returned as an *Error.
func (c *Client) Capa(ctx context.Context) (Capabilities, error) {
	caps := Capabilities{}
	lines := 0
	err := c.listing(ctx, "CAPA", "", func(line string) error {
		if lines++; lines > MaxCapabilities {
			// Read to its end (the connection stays usable), not kept.
			return &ProtocolError{Op: "CAPA", Msg: fmt.Sprintf("more than %d capabilities", MaxCapabilities)}
		}
		caps.add(line)
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.caps = caps
	return caps, nil
}

// StartTLS upgrades the connection with STLS (RFC 2595). It asks for CAPA
// first if that has not been done, and refuses with ErrNoSTLS if the server
// does not offer STLS. Bytes received after the +OK and before the handshake
// are an attack (they would be taken as TLS-protected); they abort the
// connection. Capabilities learned before TLS are forgotten: call Capa again.
func (c *Client) StartTLS(ctx context.Context, cfg *tls.Config) error {
	if c.tls {
		return errors.New("pop3: STLS on a connection that is already TLS")
	}
	if c.caps == nil {
		if _, err := c.Capa(ctx); err != nil {
			var perr *Error
			if errors.As(err, &perr) {
				return ErrNoSTLS
			}
			return err
		}
	}
	if !c.caps.Has("STLS") {
		return ErrNoSTLS
	}
	if _, err := c.cmd(ctx, "STLS", ""); err != nil {
		return err
	}
	if n := c.r.Buffered(); n > 0 {
		c.Close()
		return &ProtocolError{Op: "STLS", Msg: fmt.Sprintf("%d bytes arrived after +OK before the TLS handshake (possible injection)", n)}
	}
	stop := c.tc.watch(ctx)
	defer stop()
	tconn := tls.Client(c.tc, cfg)
	if err := tconn.HandshakeContext(ctx); err != nil {
		c.Close()
		if isTimeout(err) {
			return c.timeoutErr("the TLS handshake after STLS", err)
		}
		return &TLSError{Err: err}
	}
	c.setConn(tconn)
	c.tls = true
	c.caps = nil
	return nil
}

// User sends USER name.
func (c *Client) User(ctx context.Context, name string) error {
	_, err := c.cmd(ctx, "USER", name)
	return err
}

// Pass sends PASS password. The password never appears in the trace.
func (c *Client) Pass(ctx context.Context, password string) error {
	_, err := c.cmd(ctx, "PASS", password)
	return err
}

// UTF8 sends the UTF8 command (RFC 6856), valid before login: user names,
// passwords and messages may then be UTF-8. Send it only when CAPA lists
// UTF8; some servers (Gmail) hang up on unknown commands.
func (c *Client) UTF8(ctx context.Context) error {
	_, err := c.cmd(ctx, "UTF8", "")
	return err
}

// ErrNoAPOP is returned by APOP when the greeting held no valid timestamp.
var ErrNoAPOP = errors.New("pop3: server greeting has no valid APOP timestamp")

// APOP authenticates with the MD5 digest of the greeting's timestamp and the
// secret (RFC 1939 section 7). It refuses if the timestamp is missing or not
// of the form <local@domain> with printable ASCII only, the check that
// closes the APOP man-in-the-middle attack of CVE-2007-1558.
func (c *Client) APOP(ctx context.Context, user, secret string) error {
	if c.timestamp == "" {
		return ErrNoAPOP
	}
	_, err := c.cmd(ctx, "APOP", user+" "+apopDigest(c.timestamp, secret))
	return err
}

// apopDigest is the APOP digest of RFC 1939: MD5 of timestamp and secret.
func apopDigest(timestamp, secret string) string {
	sum := md5.Sum([]byte(timestamp + secret))
	return hex.EncodeToString(sum[:])
}

// apopTimestamp extracts a msg-id style timestamp from a greeting, or "".
func apopTimestamp(greeting string) string {
	i := strings.IndexByte(greeting, '<')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(greeting[i:], '>')
	if j < 0 {
		return ""
	}
	ts := greeting[i : i+j+1]
	inner := ts[1 : len(ts)-1]
	at := strings.IndexByte(inner, '@')
	if at <= 0 || at == len(inner)-1 || strings.Count(inner, "@") != 1 {
		return ""
	}
	for _, b := range []byte(inner) {
		if b <= ' ' || b >= 0x7f || b == '<' || b == '>' {
			return ""
		}
	}
	return ts
}

// Stat returns the number of messages and their total size in octets.
func (c *Client) Stat(ctx context.Context) (count int, size int64, err error) {
	line, err := c.cmd(ctx, "STAT", "")
	if err != nil {
		return 0, 0, err
	}
	return parseStat(line)
}

// parseStat parses the text of STAT's +OK: "count size".
func parseStat(line string) (count int, size int64, err error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, 0, &ProtocolError{Op: "STAT", Msg: fmt.Sprintf("malformed reply %q", line)}
	}
	count, err1 := strconv.Atoi(f[0])
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || count < 0 || size < 0 {
		return 0, 0, &ProtocolError{Op: "STAT", Msg: fmt.Sprintf("malformed reply %q", line)}
	}
	return count, size, nil
}

// MessageSize is one entry of a LIST listing.
type MessageSize struct {
	Number int
	Size   int64
}

// List returns the number and size of every message.
func (c *Client) List(ctx context.Context) ([]MessageSize, error) {
	var out []MessageSize
	err := c.listing(ctx, "LIST", "", func(line string) error {
		m, err := parseListLine(line)
		if err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

// ListOne returns the size of message n.
func (c *Client) ListOne(ctx context.Context, n int) (MessageSize, error) {
	line, err := c.cmd(ctx, "LIST", strconv.Itoa(n))
	if err != nil {
		return MessageSize{}, err
	}
	return parseListLine(line)
}

func parseListLine(line string) (MessageSize, error) {
	f := strings.Fields(line)
	if len(f) >= 2 {
		n, err1 := strconv.Atoi(f[0])
		size, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 == nil && err2 == nil && n > 0 && size >= 0 {
			return MessageSize{Number: n, Size: size}, nil
		}
	}
	return MessageSize{}, &ProtocolError{Op: "LIST", Msg: fmt.Sprintf("malformed line %q", line)}
}

// MessageUID is one entry of a UIDL listing.
type MessageUID struct {
	Number int
	UID    string
}

// UIDL returns the unique id of every message (RFC 1939 section 7). A
// UID used by two messages is a ProtocolError, found at the second: the
// rest of the listing is read and dropped.
func (c *Client) UIDL(ctx context.Context) ([]MessageUID, error) {
	var out []MessageUID
	err := c.listing(ctx, "UIDL", "", uidParser(&out))
	return out, err
}

// uidParser returns a listing line handler that appends to out and
// refuses a malformed line or a UID seen before.
func uidParser(out *[]MessageUID) func(string) error {
	return uidHandler(func(m MessageUID) error {
		*out = append(*out, m)
		return nil
	})
}

// uidHandler parses each line of a UIDL listing and hands it to fn.
// Whether a UID is used twice is the caller's to judge.
func uidHandler(fn func(MessageUID) error) func(string) error {
	return func(line string) error {
		m, err := parseUIDLLine(line)
		if err != nil {
			return err
		}
		return fn(m)
	}
}

// UIDLOne returns the unique id of message n.
func (c *Client) UIDLOne(ctx context.Context, n int) (MessageUID, error) {
	line, err := c.cmd(ctx, "UIDL", strconv.Itoa(n))
	if err != nil {
		return MessageUID{}, err
	}
	return parseUIDLLine(line)
}

// parseUIDLLine parses "n uid". RFC 1939 allows 1 to 70 printable ASCII
// characters in a UID; servers that send other bytes are tolerated, the
// UID kept in its canonical form (CanonicalUID), but a UID must not be
// empty.
func parseUIDLLine(line string) (MessageUID, error) {
	num, uid, ok := strings.Cut(strings.TrimLeft(line, " "), " ")
	uid = strings.Trim(uid, " \t")
	n, err := strconv.Atoi(num)
	if !ok || err != nil || n <= 0 || uid == "" {
		return MessageUID{}, &ProtocolError{Op: "UIDL", Msg: fmt.Sprintf("malformed line %q", line)}
	}
	return MessageUID{Number: n, UID: CanonicalUID(uid)}, nil
}

// EscapedPrefix starts a UID that CanonicalUID escaped. It is not ASCII,
// so no UID a server sends within RFC 1939 starts with it.
const EscapedPrefix = "\u00a7" // §

// CanonicalUID is the one form of a server's UID that popfetch keeps,
// compares, logs and exports. RFC 1939 (section 7) allows 0x21 to 0x7E
// in a UID; such a UID is its own canonical form, however long (servers
// exceed the RFC's 70 octets, and a line is bounded anyway). Any other
// (a space, a CR, a control character, a byte that is not ASCII) is kept
// escaped: EscapedPrefix, then the UID with '%' and each octet outside
// 0x21-0x7E written as %XX. The form is one-to-one, so two messages never
// share a key, and a message keeps its key from poll to poll.
func CanonicalUID(raw string) string {
	if !needsEscape(raw) {
		return raw
	}
	var b strings.Builder
	b.WriteString(EscapedPrefix)
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c > ' ' && c < 0x7f && c != '%' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// RawUID inverts CanonicalUID: the UID as the server sent it. popfetch
// before November 2026 stored some such UIDs raw; a poll finds their
// records by this.
func RawUID(uid string) string {
	rest, ok := strings.CutPrefix(uid, EscapedPrefix)
	if !ok {
		return uid
	}
	var b strings.Builder
	for i := 0; i < len(rest); i++ {
		if rest[i] == '%' && i+2 < len(rest) {
			if v, err := strconv.ParseUint(rest[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(rest[i])
	}
	return b.String()
}

func needsEscape(uid string) bool {
	for i := 0; i < len(uid); i++ {
		if c := uid[i]; c <= ' ' || c >= 0x7f {
			return true
		}
	}
	return false
}

// Retr starts retrieving message n. The message is read from the returned
// reader, with dots unstuffed and CRLF turned into LF; the reader returns
// ErrTruncated if the connection ends before the message does. It must be
// closed before the next command.
func (c *Client) Retr(ctx context.Context, n int) (*MessageReader, error) {
	return c.message(ctx, "RETR", strconv.Itoa(n))
}

// Top starts retrieving the header of message n and its first lines of
// body, like Retr.
func (c *Client) Top(ctx context.Context, n, lines int) (*MessageReader, error) {
	return c.message(ctx, "TOP", strconv.Itoa(n)+" "+strconv.Itoa(lines))
}

// Dele marks message n for deletion. The server removes it at QUIT.
func (c *Client) Dele(ctx context.Context, n int) error {
	_, err := c.cmd(ctx, "DELE", strconv.Itoa(n))
	return err
}

// Rset unmarks all messages marked for deletion.
func (c *Client) Rset(ctx context.Context) error {
	_, err := c.cmd(ctx, "RSET", "")
	return err
}

// Noop does nothing but keep the connection alive.
func (c *Client) Noop(ctx context.Context) error {
	_, err := c.cmd(ctx, "NOOP", "")
	return err
}

// Quit ends the session: the server deletes the messages marked for
// deletion and closes the connection. An -ERR reply means it could not
// delete them all.
func (c *Client) Quit(ctx context.Context) error {
	_, err := c.cmd(ctx, "QUIT", "")
	c.conn.Close()
	if c.broken == nil {
		c.broken = ErrClosed
	}
	return err
}

// MessageReader streams one message of a RETR or TOP reply.
type MessageReader struct {
	verb string // RETR or TOP, and its argument: a timeout's message
	arg  string // says what was being read
	dr   *dotReader
	done func(err error) // called once, with io.EOF or the failure
	c    *Client
	end  bool
	err  error
}

// Read implements io.Reader. At the end of the message it returns io.EOF;
// if the message was cut short it returns ErrTruncated or the network error.
func (m *MessageReader) Read(p []byte) (int, error) {
	if m.end {
		return 0, m.err
	}
	n, err := m.dr.Read(p)
	if err != nil {
		m.finish(err)
		return n, m.err
	}
	return n, nil
}

// Size returns how many octets of message data (after unstuffing and
// line-ending conversion) have been read so far; after Close, which reads
// the rest without returning it, the size of the whole message.
func (m *MessageReader) Size() int64 { return m.dr.n }

// Close reads and discards the rest of the message so that the connection
// can be used again. If that fails the client is broken.
func (m *MessageReader) Close() error {
	if !m.end {
		err := m.dr.drain()
		if err == nil {
			err = io.EOF
		}
		m.finish(err)
	}
	if m.err == io.EOF {
		return nil
	}
	return m.err
}

func (m *MessageReader) finish(err error) {
	if isTimeout(err) {
		err = m.c.timeoutErr(readingMessage(m.verb, m.arg), err)
	}
	m.end = true
	m.err = err
	m.c.tc.readingBody(false)
	if err == io.EOF {
		m.c.tracef("S: <%d octets of message data>", m.dr.n)
	} else {
		m.c.tracef("S: <%d octets of message data, incomplete: %v>", m.dr.n, err)
	}
	m.done(err)
}

func (c *Client) message(ctx context.Context, verb, arg string) (*MessageReader, error) {
	if _, err := c.cmd(ctx, verb, arg); err != nil {
		return nil, err
	}
	stop := c.tc.watch(ctx)
	c.tc.readingBody(true)
	m := &MessageReader{c: c, dr: newDotReader(c.r), verb: verb, arg: arg}
	m.done = func(err error) {
		stop()
		c.open = nil
		if err != io.EOF {
			c.broken = err
		}
	}
	c.open = m
	return m, nil
}

// listing sends a command with a multi-line reply and calls fn for each
// line; each line is bounded by MaxLineLength.
func (c *Client) listing(ctx context.Context, verb, arg string, fn func(string) error) error {
	if _, err := c.cmd(ctx, verb, arg); err != nil {
		return err
	}
	stop := c.tc.watch(ctx)
	defer stop()
	return c.readListing(verb, fn)
}

// readListing reads the lines of a multi-line listing up to its "." line
// and calls fn for each. An error from fn is returned once the listing is
// read to its end, so the connection stays usable.
func (c *Client) readListing(verb string, fn func(string) error) error {
	var ferr error
	for lines := 0; ; lines++ {
		if lines > MaxListingLines {
			c.broken = &ProtocolError{Op: verb, Msg: fmt.Sprintf("listing longer than %d lines", MaxListingLines)}
			return c.broken
		}
		if ferr != nil {
			// Refused already: skip the rest without keeping it.
			end, err := c.skipLine(verb)
			if err != nil {
				c.broken = err
				return c.netErr(verb, err)
			}
			if end {
				c.tracef("S: (%d lines) .", lines)
				return ferr
			}
			continue
		}
		line, err := c.readLine(MaxLineLength, verb)
		if err != nil {
			c.broken = err
			return c.netErr(verb, err)
		}
		c.tracef("S: %s", line)
		if line == "." {
			return ferr
		}
		if ferr = fn(strings.TrimPrefix(line, ".")); ferr != nil {
			c.tracef("S: (the rest of the listing is skipped: %v)", ferr)
		}
	}
}

// cmd sends one command and reads its status line. It returns the text
// after +OK, an *Error for -ERR, or a network or protocol error (after
// which the client is broken).
func (c *Client) cmd(ctx context.Context, verb, arg string) (string, error) {
	if err := c.ready(verb); err != nil {
		return "", err
	}
	if strings.ContainsAny(arg, "\r\n\x00") {
		return "", ErrBadArgument
	}
	stop := c.tc.watch(ctx)
	defer stop()
	line := verb
	if arg != "" {
		line += " " + arg
	}
	c.tracef("C: %s", redact(verb, arg))
	if err := c.send(line); err != nil {
		return "", c.sendErr(verb, err)
	}
	return c.readStatus(verb, arg)
}

// readStatus reads and interprets one status line, the reply to op (a
// command verb, or "greeting") sent with arg.
func (c *Client) readStatus(op, arg string) (string, error) {
	line, err := c.readLine(MaxLineLength, op)
	if err != nil {
		c.broken = err
		if isTimeout(err) {
			err = c.timeoutErr(doing(op, arg), err)
		}
		return "", c.netErr(op, err)
	}
	c.tracef("S: %s", line)
	return c.status(op, line)
}

// readLine reads one line of at most max octets, which must arrive whole
// within the timeout: a server that trickles a byte at a time, each just
// inside the idle timeout, does not hold the client for ever.
func (c *Client) readLine(max int, op string) (string, error) {
	c.tc.wholeLineBy(time.Now().Add(c.tc.timeout))
	defer c.tc.wholeLineBy(time.Time{})
	return readBoundedLine(c.r, max, op)
}

// skipLine is skipLine (reader.go) with readLine's bound.
func (c *Client) skipLine(op string) (end bool, err error) {
	c.tc.wholeLineBy(time.Now().Add(c.tc.timeout))
	defer c.tc.wholeLineBy(time.Time{})
	return skipLine(c.r, MaxLineLength, op)
}

// status interprets a status line already read: the text after +OK, an
// *Error for -ERR, or a ProtocolError (the client is then broken).
func (c *Client) status(op, line string) (string, error) {
	ok, text, err := parseStatus(line)
	if err != nil {
		c.broken = err
		return "", &ProtocolError{Op: op, Msg: err.Error()}
	}
	if !ok {
		e := &Error{Command: op}
		e.Code, e.Text = splitCode(c.redacted(text))
		return "", e
	}
	return text, nil
}

func (c *Client) netErr(op string, err error) error {
	var (
		perr *ProtocolError
		te   *TimeoutError
	)
	if isTimeout(err) && !errors.As(err, &te) {
		err = c.timeoutErr(doing(op, ""), err)
	}
	if errors.As(err, &perr) || errors.As(err, &te) || errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("pop3: %s: server closed the connection: %w", op, err)
	}
	return fmt.Errorf("pop3: %s: %w", op, err)
}

// sendErr is netErr for a failure to send op: a timeout says so.
func (c *Client) sendErr(op string, err error) error {
	if isTimeout(err) {
		err = c.timeoutErr("sending "+op, err)
	}
	return c.netErr(op, err)
}

// timeoutErr returns err, a timeout, as a *TimeoutError saying what the
// client was doing; one already is is returned as it is.
func (c *Client) timeoutErr(doing string, err error) error {
	var te *TimeoutError
	if errors.As(err, &te) {
		return err
	}
	te = &TimeoutError{Addr: c.addr, Doing: doing, Err: err}
	if !errors.Is(err, context.DeadlineExceeded) {
		te.After = c.tc.timeout
	}
	return te
}

// readingMessage describes reading the message that RETR or TOP arg
// brings, for a timeout's message.
func readingMessage(verb, arg string) string {
	n, _, _ := strings.Cut(arg, " ")
	if verb == "TOP" {
		return fmt.Sprintf("reading the header of message %s (TOP %s)", n, arg)
	}
	return fmt.Sprintf("reading message %s (%s %s)", n, verb, arg)
}

// parseStatus splits "+OK text" or "-ERR text".
func parseStatus(line string) (ok bool, text string, err error) {
	for _, ind := range []string{"+OK", "-ERR"} {
		if len(line) >= len(ind) && strings.EqualFold(line[:len(ind)], ind) {
			rest := line[len(ind):]
			if rest != "" && rest[0] != ' ' {
				break
			}
			return ind == "+OK", strings.TrimPrefix(rest, " "), nil
		}
	}
	const max = 64
	if len(line) > max {
		line = line[:max] + "..."
	}
	return false, "", fmt.Errorf("expected +OK or -ERR, got %q", line)
}

// splitCode separates a leading "[CODE]" from the text of an -ERR reply.
func splitCode(text string) (code, rest string) {
	if !strings.HasPrefix(text, "[") {
		return "", text
	}
	end := strings.IndexByte(text, ']')
	if end < 0 {
		return "", text
	}
	return text[1:end], strings.TrimLeft(text[end+1:], " ")
}

// redact hides secrets in traced commands.
func redact(verb, arg string) string {
	switch verb {
	case "PASS":
		return "PASS <redacted>"
	case "APOP":
		user, _, _ := strings.Cut(arg, " ")
		return "APOP " + user + " <redacted>"
	}
	if arg == "" {
		return verb
	}
	return verb + " " + arg
}

// tracef writes a trace line. It may be called by a pipeline's reader and
// writer at once.
func (c *Client) tracef(format string, args ...any) {
	if c.debug != nil {
		c.traceMu.Lock()
		io.WriteString(c.debug, c.redacted(fmt.Sprintf(format+"\n", args...)))
		c.traceMu.Unlock()
	}
}
