package pop3

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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// A transcript is what the server side of a test connection does, step by
// step: "S: text" sends text+CRLF, "C: text" expects exactly that line from
// the client, "RAW: text" sends text as is, "CLOSE" hangs up, "STALL" waits
// until the test ends, "TLS" performs a server TLS handshake, "TLS-FAIL" one
// that the client is expected to abort, and "SX: text" sends text that the
// client may hang up on (the script ends there).
type transcript []string

// runTranscript connects a Client to a server playing script. The returned
// function waits for the server side and fails the test if the client did
// not send what the script expected.
func runTranscript(t *testing.T, script transcript, opts *Options) (*Client, error, func()) {
	t.Helper()
	return runTranscriptTLS(t, script, opts, nil)
}

func runTranscriptTLS(t *testing.T, script transcript, opts *Options, cert *pop3test.Cert) (*Client, error, func()) {
	t.Helper()
	cconn, sconn := loopbackPair(t)
	done := make(chan error, 1)
	stop := make(chan struct{})
	go func() { done <- playServer(sconn, script, stop, cert) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := NewClient(ctx, cconn, opts)
	return c, err, func() {
		t.Helper()
		close(stop)
		cconn.Close()
		if err := <-done; err != nil {
			t.Errorf("server side: %v", err)
		}
	}
}

// loopbackPair returns the two ends of a TCP connection on 127.0.0.1. TCP
// rather than net.Pipe: a pipe has no buffer, and TLS 1.3 deadlocks on it
// when both sides write at once (session tickets against an alert).
func loopbackPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	return client, server
}

func playServer(conn net.Conn, script transcript, stop chan struct{}, cert *pop3test.Cert) error {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	for i, step := range script {
		verb, arg, _ := strings.Cut(step, ": ")
		switch verb {
		case "S":
			if _, err := io.WriteString(conn, arg+"\r\n"); err != nil {
				return fmt.Errorf("step %d %q: %w", i, step, err)
			}
		case "RAW":
			if _, err := io.WriteString(conn, arg); err != nil {
				return fmt.Errorf("step %d %q: %w", i, step, err)
			}
		case "C":
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("step %d: want %q, read error %w", i, arg, err)
			}
			if got := strings.TrimSuffix(line, "\r\n"); got != arg {
				return fmt.Errorf("step %d: client sent %q, want %q", i, got, arg)
			}
		case "SX":
			io.WriteString(conn, arg+"\r\n")
			return nil
		case "CLOSE":
			return nil
		case "STALL":
			<-stop
			return nil
		case "TLS":
			tconn := tls.Server(conn, cert.ServerConfig())
			if err := tconn.Handshake(); err != nil {
				return fmt.Errorf("step %d: TLS handshake: %w", i, err)
			}
			conn, r = tconn, bufio.NewReader(tconn)
		case "TLS-FAIL":
			if err := tls.Server(conn, cert.ServerConfig()).Handshake(); err == nil {
				return fmt.Errorf("step %d: TLS handshake succeeded, want failure", i)
			}
			return nil
		default:
			return fmt.Errorf("bad script step %q", step)
		}
	}
	// The client must not send anything after the script ends.
	conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if line, err := r.ReadString('\n'); err == nil {
		return fmt.Errorf("client sent unexpected %q", line)
	}
	return nil
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestGreetingAPOPTimestamp(t *testing.T) {
	tests := []struct {
		greeting string
		want     string
	}{
		{"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>", "<1896.697170952@dbc.mtview.ca.us>"},
		{"+OK Dovecot ready.", ""},
		{"+OK <no-at-sign>", ""},
		{"+OK <two@@ats>", ""},
		{"+OK <@domain>", ""},
		{"+OK <local@>", ""},
		{"+OK <sp ace@x>", ""},
		{"+OK <ctl\x01@x>", ""},
		{"+OK <unterminated@x", ""},
		{"+OK <caf\xc3\xa9@x>", ""},
	}
	for _, tt := range tests {
		c, err, wait := runTranscript(t, transcript{"S: " + tt.greeting}, nil)
		if err != nil {
			t.Fatalf("%q: %v", tt.greeting, err)
		}
		if got := c.APOPTimestamp(); got != tt.want {
			t.Errorf("%q: timestamp %q, want %q", tt.greeting, got, tt.want)
		}
		wait()
	}
}

func TestGreetingErr(t *testing.T) {
	_, err, wait := runTranscript(t, transcript{"S: -ERR [SYS/TEMP] too busy"}, nil)
	defer wait()
	var perr *Error
	if !errors.As(err, &perr) || perr.Code != CodeSysTemp || !perr.Temporary() {
		t.Fatalf("got %v, want temporary *Error SYS/TEMP", err)
	}
}

func TestCapa(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: CAPA",
		"S: +OK list follows",
		"S: TOP",
		"S: UIDL",
		"S: SASL PLAIN LOGIN",
		"S: pipelining",
		"S: .",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	caps, err := c.Capa(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"TOP", "UIDL", "SASL", "PIPELINING", "pipelining"} {
		if !caps.Has(name) {
			t.Errorf("capability %s missing from %v", name, caps)
		}
	}
	if got := strings.Join(caps["SASL"], ","); got != "PLAIN,LOGIN" {
		t.Errorf("SASL args %q", got)
	}
	if caps.Has("STLS") {
		t.Error("STLS reported but not sent")
	}
}

// TestCapaBounded: a CAPA listing of more capabilities than any server
// has is refused once read to its end, rather than kept: a million
// distinct 500-octet lines would have made a map of half a gigabyte.
func TestCapaBounded(t *testing.T) {
	tr := transcript{"S: +OK hi", "C: CAPA", "S: +OK list follows"}
	for i := 0; i <= MaxCapabilities; i++ {
		tr = append(tr, fmt.Sprintf("S: X-CAP-%d %s", i, strings.Repeat("a", 400)))
	}
	tr = append(tr, "S: .", "C: NOOP", "S: +OK")
	c, err, wait := runTranscript(t, tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	caps, err := c.Capa(ctx(t))
	var perr *ProtocolError
	if !errors.As(err, &perr) || caps != nil {
		t.Fatalf("Capa of %d lines: %d capabilities, error %v; want a protocol error", MaxCapabilities+1, len(caps), err)
	}
	if err := c.Noop(ctx(t)); err != nil {
		t.Errorf("NOOP after the refused listing: %v", err)
	}
}

func TestUserPass(t *testing.T) {
	var trace bytes.Buffer
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: USER alice",
		"S: +OK",
		"C: PASS s3cret pass",
		"S: -ERR [AUTH] Authentication failed.",
		"C: USER bob",
		"S: +OK",
		"C: PASS hunter2",
		"S: +OK logged in",
	}, &Options{Debug: &trace})
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	if err := c.User(ctx(t), "alice"); err != nil {
		t.Fatal(err)
	}
	err = c.Pass(ctx(t), "s3cret pass")
	var perr *Error
	if !errors.As(err, &perr) || !perr.HasCode(CodeAuth) || perr.Temporary() || perr.Command != "PASS" {
		t.Fatalf("PASS: got %v, want permanent [AUTH] error", err)
	}
	if err := c.User(ctx(t), "bob"); err != nil {
		t.Fatal(err)
	}
	if err := c.Pass(ctx(t), "hunter2"); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cret", "hunter2"} {
		if strings.Contains(trace.String(), secret) {
			t.Errorf("trace contains password %q:\n%s", secret, trace.String())
		}
	}
	if !strings.Contains(trace.String(), "C: PASS <redacted>") {
		t.Errorf("trace lacks redacted PASS line:\n%s", trace.String())
	}
}

func TestAPOP(t *testing.T) {
	// The example of RFC 1939 section 7.
	var trace bytes.Buffer
	c, err, wait := runTranscript(t, transcript{
		"S: +OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
		"C: APOP mrose c4c9334bac560ecc979e58001b3e22fb",
		"S: +OK maildrop has 1 message (369 octets)",
	}, &Options{Debug: &trace})
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	if err := c.APOP(ctx(t), "mrose", "tanstaaf"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(trace.String(), "c4c9334b") {
		t.Errorf("trace contains the APOP digest:\n%s", trace.String())
	}
}

func TestAPOPWithoutTimestamp(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{"S: +OK <bad timestamp@x>"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	if err := c.APOP(ctx(t), "u", "p"); !errors.Is(err, ErrNoAPOP) {
		t.Fatalf("got %v, want ErrNoAPOP", err)
	}
}

func TestStatListUIDL(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: STAT",
		"S: +OK 2 320",
		"C: LIST",
		"S: +OK 2 messages",
		"S: 1 120",
		"S: 2 200",
		"S: .",
		"C: LIST 2",
		"S: +OK 2 200",
		"C: UIDL",
		"S: +OK",
		"S: 1 whqtswO00WBw418f9t5JxYwZ",
		"S: 2 QhdPYR:00WBw1Ph7x7",
		"S: .",
		"C: UIDL 1",
		"S: +OK 1 whqtswO00WBw418f9t5JxYwZ",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	n, size, err := c.Stat(ctx(t))
	if err != nil || n != 2 || size != 320 {
		t.Fatalf("STAT = %d, %d, %v", n, size, err)
	}
	list, err := c.List(ctx(t))
	if err != nil || len(list) != 2 || list[1] != (MessageSize{2, 200}) {
		t.Fatalf("LIST = %v, %v", list, err)
	}
	one, err := c.ListOne(ctx(t), 2)
	if err != nil || one != (MessageSize{2, 200}) {
		t.Fatalf("LIST 2 = %v, %v", one, err)
	}
	uids, err := c.UIDL(ctx(t))
	if err != nil || len(uids) != 2 || uids[1] != (MessageUID{2, "QhdPYR:00WBw1Ph7x7"}) {
		t.Fatalf("UIDL = %v, %v", uids, err)
	}
	u, err := c.UIDLOne(ctx(t), 1)
	if err != nil || u.UID != "whqtswO00WBw418f9t5JxYwZ" {
		t.Fatalf("UIDL 1 = %v, %v", u, err)
	}
}

func TestMalformedListing(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: UIDL",
		"S: +OK",
		"S: 1",
		"S: 2 ok",
		"S: .",
		"C: NOOP",
		"S: +OK",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	_, err = c.UIDL(ctx(t))
	var perr *ProtocolError
	if !errors.As(err, &perr) {
		t.Fatalf("got %v, want ProtocolError", err)
	}
	// The listing was read to its end: the connection is still usable.
	if err := c.Noop(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestRetr(t *testing.T) {
	long := strings.Repeat("x", 1<<20+17) // longer than any buffer
	longCR := strings.Repeat("y", 32<<10-1) + "\r"
	tests := []struct {
		name   string
		server []string // the multi-line body as sent, lines without CRLF
		want   string
	}{
		{"plain", []string{"Subject: hi", "", "body"}, "Subject: hi\n\nbody\n"},
		{"dot-stuffed", []string{"a", "..x", "..", "...", "b"}, "a\n.x\n.\n..\nb\n"},
		{"dot inside line", []string{"a.b", " .", "x."}, "a.b\n .\nx.\n"},
		{"empty message", nil, ""},
		// A message whose last line lacked a line break: the server adds
		// CRLF before the terminator (RFC 1939 section 3), so it arrives
		// with LF.
		{"message with no final newline", []string{"Subject: x", "", "last line"}, "Subject: x\n\nlast line\n"},
		{"empty lines", []string{"", "", ""}, "\n\n\n"},
		{"line over 1 MiB", []string{"h: v", "", long, "end"}, "h: v\n\n" + long + "\nend\n"},
		{"dot-stuffed long line", []string{"." + long}, long + "\n"},
		{"bare CR kept", []string{"a\rb", "c\r"}, "a\rb\nc\r\n"},
		{"CR at a buffer boundary", []string{longCR + "z"}, longCR + "z\n"},
		{"CRLF across a buffer boundary", []string{strings.Repeat("q", 32<<10-1), "next"}, strings.Repeat("q", 32<<10-1) + "\nnext\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script := transcript{"S: +OK hi", "C: RETR 1", "S: +OK message follows"}
			for _, l := range tt.server {
				script = append(script, "S: "+l)
			}
			script = append(script, "S: .", "C: NOOP", "S: +OK")
			c, err, wait := runTranscript(t, script, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer wait()
			m, err := c.Retr(ctx(t), 1)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(m)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("got %d bytes %q..., want %d bytes %q...", len(got), trunc(got), len(tt.want), trunc([]byte(tt.want)))
			}
			if m.Size() != int64(len(tt.want)) {
				t.Errorf("Size() = %d, want %d", m.Size(), len(tt.want))
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.Noop(ctx(t)); err != nil {
				t.Fatalf("NOOP after RETR: %v", err)
			}
		})
		// Closed after a few octets: the rest is read and counted.
		t.Run(tt.name+"/closed early", func(t *testing.T) {
			script := transcript{"S: +OK hi", "C: RETR 1", "S: +OK message follows"}
			for _, l := range tt.server {
				script = append(script, "S: "+l)
			}
			script = append(script, "S: .", "C: NOOP", "S: +OK")
			c, err, wait := runTranscript(t, script, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer wait()
			m, err := c.Retr(ctx(t), 1)
			if err != nil {
				t.Fatal(err)
			}
			io.ReadFull(m, make([]byte, min(3, len(tt.want))))
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if m.Size() != int64(len(tt.want)) {
				t.Errorf("Size() after Close = %d, want %d", m.Size(), len(tt.want))
			}
			if err := c.Noop(ctx(t)); err != nil {
				t.Fatalf("NOOP after RETR: %v", err)
			}
		})
	}
}

func trunc(b []byte) string {
	if len(b) > 40 {
		return string(b[:40])
	}
	return string(b)
}

func TestRetrSmallReads(t *testing.T) {
	// Reading one byte at a time must give the same result as ReadAll.
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi", "C: RETR 1", "S: +OK", "S: ..a\rb", "S: ", "S: .", "C: NOOP", "S: +OK",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	m, err := c.Retr(ctx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	b := make([]byte, 1)
	for {
		n, err := m.Read(b)
		got = append(got, b[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(got) != ".a\rb\n\n" {
		t.Errorf("got %q", got)
	}
	m.Close()
	if err := c.Noop(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestRetrTruncated(t *testing.T) {
	tests := []struct {
		name   string
		script transcript
	}{
		{"closed before the dot line", transcript{"S: +OK hi", "C: RETR 1", "S: +OK", "S: Subject: x", "S: ", "S: body", "CLOSE"}},
		{"closed mid-line", transcript{"S: +OK hi", "C: RETR 1", "S: +OK", "S: Subject: x", "RAW: bo", "CLOSE"}},
		{"closed after a lone dot without CRLF", transcript{"S: +OK hi", "C: RETR 1", "S: +OK", "S: x", "RAW: .", "CLOSE"}},
		{"closed right after +OK", transcript{"S: +OK hi", "C: RETR 1", "S: +OK", "CLOSE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err, wait := runTranscript(t, tt.script, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer wait()
			m, err := c.Retr(ctx(t), 1)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(m)
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("ReadAll error %v, want ErrTruncated", err)
			}
			if err := m.Close(); !errors.Is(err, ErrTruncated) {
				t.Errorf("Close error %v, want ErrTruncated", err)
			}
			if err := c.Noop(ctx(t)); err == nil {
				t.Error("NOOP on a broken connection succeeded")
			}
		})
	}
}

func TestRetrCloseDrains(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi", "C: RETR 1", "S: +OK", "S: line 1", "S: line 2", "S: .", "C: DELE 1", "S: +OK",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	m, err := c.Retr(ctx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Dele(ctx(t), 1); err == nil {
		t.Fatal("DELE while RETR unread succeeded")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Dele(ctx(t), 1); err != nil {
		t.Fatal(err)
	}
}

func TestTop(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi", "C: TOP 3 0", "S: +OK", "S: Subject: s", "S: ", "S: .",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	m, err := c.Top(ctx(t), 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(m)
	if err != nil || string(got) != "Subject: s\n\n" {
		t.Fatalf("TOP = %q, %v", got, err)
	}
}

func TestSimpleCommands(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: DELE 1", "S: +OK marked",
		"C: RSET", "S: +OK",
		"C: NOOP", "S: +OK",
		"C: DELE 9", "S: -ERR no such message",
		"C: QUIT", "S: +OK bye",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	if err := c.Dele(ctx(t), 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Rset(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(ctx(t)); err != nil {
		t.Fatal(err)
	}
	var perr *Error
	if err := c.Dele(ctx(t), 9); !errors.As(err, &perr) || perr.Code != "" || perr.Text != "no such message" {
		t.Fatalf("DELE 9: %v", err)
	}
	if err := c.Quit(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(ctx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("NOOP after QUIT: %v", err)
	}
}

func TestErrInUse(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi", "C: USER u", "S: +OK", "C: PASS p", "S: -ERR [IN-USE] Mailbox is locked by another POP3 session",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	c.User(ctx(t), "u")
	err = c.Pass(ctx(t), "p")
	var perr *Error
	if !errors.As(err, &perr) || perr.Code != CodeInUse || !perr.Temporary() {
		t.Fatalf("got %v, want temporary IN-USE", err)
	}
	if perr.Text != "Mailbox is locked by another POP3 session" {
		t.Errorf("text %q", perr.Text)
	}
}

func TestErrorCodes(t *testing.T) {
	tests := []struct {
		code      string
		temporary bool
	}{
		{"IN-USE", true}, {"LOGIN-DELAY", true}, {"SYS/TEMP", true}, {"SYS/PERM", false},
		{"AUTH", false}, {"", false}, {"SYS", false}, {"in-use", true}, {"SYS/TEMP/DISK", true},
	}
	for _, tt := range tests {
		if got := (&Error{Code: tt.code}).Temporary(); got != tt.temporary {
			t.Errorf("[%s].Temporary() = %v", tt.code, got)
		}
	}
}

func TestOverlongStatusLine(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi", "C: NOOP", "S: +OK " + strings.Repeat("a", 600),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	err = c.Noop(ctx(t))
	var perr *ProtocolError
	if !errors.As(err, &perr) {
		t.Fatalf("got %v, want ProtocolError", err)
	}
	// Exactly at the limit is fine: 512 octets including CRLF.
	c2, err, wait2 := runTranscript(t, transcript{"S: +OK " + strings.Repeat("b", MaxLineLength-6)}, nil)
	defer wait2()
	if err != nil {
		t.Fatalf("status line of exactly %d octets: %v", MaxLineLength, err)
	}
	_ = c2
}

func TestOverlongUIDLLine(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi", "C: UIDL", "S: +OK", "SX: 1 " + strings.Repeat("u", 10<<20),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	_, err = c.UIDL(ctx(t))
	var perr *ProtocolError
	if !errors.As(err, &perr) {
		t.Fatalf("got %v, want ProtocolError", err)
	}
}

func TestGarbageStatus(t *testing.T) {
	for _, line := range []string{"HELLO", "+OKAY", "-ERROR x", "", "\x00\x01"} {
		c, err, wait := runTranscript(t, transcript{"S: +OK hi", "C: NOOP", "S: " + line}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var perr *ProtocolError
		if err := c.Noop(ctx(t)); !errors.As(err, &perr) {
			t.Errorf("status %q: got %v, want ProtocolError", line, err)
		}
		wait()
	}
}

func TestArgumentWithCRLF(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{"S: +OK hi"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait() // fails if anything at all was sent
	for _, arg := range []string{"a\r\nDELE 1", "a\nb", "a\rb", "a\x00b"} {
		if err := c.User(ctx(t), arg); !errors.Is(err, ErrBadArgument) {
			t.Errorf("USER %q: got %v, want ErrBadArgument", arg, err)
		}
		if err := c.Pass(ctx(t), arg); !errors.Is(err, ErrBadArgument) {
			t.Errorf("PASS %q: got %v, want ErrBadArgument", arg, err)
		}
	}
}

func TestContextCancelInterruptsRead(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{"S: +OK hi", "C: NOOP", "STALL"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	cctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	err = c.Noop(cctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel took %v", d)
	}
}

func TestIdleTimeout(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{"S: +OK hi", "C: RETR 1", "S: +OK", "S: partial", "STALL"}, &Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	m, err := c.Retr(ctx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = io.ReadAll(m)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("got %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timeout took %v", d)
	}
}

func TestStartTLS(t *testing.T) {
	cert, err := pop3test.NewCert(time.Hour, "pop.test")
	if err != nil {
		t.Fatal(err)
	}
	c, err, wait := runTranscriptTLS(t, transcript{
		"S: +OK hi",
		"C: CAPA", "S: +OK", "S: STLS", "S: USER", "S: .",
		"C: STLS", "S: +OK Begin TLS negotiation now.",
		"TLS",
		"C: CAPA", "S: +OK", "S: USER", "S: UIDL", "S: .",
	}, nil, cert)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	if err := c.StartTLS(ctx(t), cert.ClientConfig("pop.test")); err != nil {
		t.Fatal(err)
	}
	if !c.IsTLS() {
		t.Error("IsTLS false after STLS")
	}
	caps, err := c.Capa(ctx(t))
	if err != nil || !caps.Has("UIDL") || caps.Has("STLS") {
		t.Fatalf("CAPA after STLS = %v, %v", caps, err)
	}
}

func TestStartTLSRefusals(t *testing.T) {
	cert, err := pop3test.NewCert(time.Hour, "pop.test")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		script transcript
		check  func(error) bool
	}{
		{"not in CAPA", transcript{"S: +OK hi", "C: CAPA", "S: +OK", "S: USER", "S: ."},
			func(err error) bool { return errors.Is(err, ErrNoSTLS) }},
		{"no CAPA", transcript{"S: +OK hi", "C: CAPA", "S: -ERR unknown command"},
			func(err error) bool { return errors.Is(err, ErrNoSTLS) }},
		{"STLS refused", transcript{"S: +OK hi", "C: CAPA", "S: +OK", "S: STLS", "S: .", "C: STLS", "S: -ERR not now"},
			func(err error) bool { var e *Error; return errors.As(err, &e) }},
		{"plaintext injected after +OK", transcript{"S: +OK hi", "C: CAPA", "S: +OK", "S: STLS", "S: .", "C: STLS", "RAW: +OK go\r\n+OK injected\r\n", "STALL"},
			func(err error) bool { var e *ProtocolError; return errors.As(err, &e) }},
		{"wrong certificate name", transcript{"S: +OK hi", "C: CAPA", "S: +OK", "S: STLS", "S: .", "C: STLS", "S: +OK", "TLS-FAIL"},
			func(err error) bool {
				var e *TLSError
				return errors.As(err, &e) && strings.Contains(err.Error(), "other.test")
			}},
		{"handshake stalls", transcript{"S: +OK hi", "C: CAPA", "S: +OK", "S: STLS", "S: .", "C: STLS", "S: +OK", "STALL"},
			func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err, wait := runTranscriptTLS(t, tt.script, nil, cert)
			if err != nil {
				t.Fatal(err)
			}
			defer wait()
			cfg := cert.ClientConfig("other.test")
			sctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err = c.StartTLS(sctx, cfg)
			if err == nil || !tt.check(err) {
				t.Fatalf("got %v", err)
			}
			if c.IsTLS() {
				t.Error("IsTLS after a failed STLS")
			}
		})
	}
}

func TestCanonicalUID(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"0123456789abcdef", "0123456789abcdef"},
		{"!~\"%'", "!~\"%'"}, // all of 0x21-0x7E stays, % too
		{strings.Repeat("x", 300), strings.Repeat("x", 300)},
		{"a\rb", "§a%0Db"},
		{"a b", "§a%20b"},
		{"a%b c", "§a%25b%20c"},
		{"ü", "§%C3%BC"},
		{"§", "§%C2%A7"},
		{"\x1b[2J", "§%1B[2J"},
		{"del\x7f", "§del%7F"},
	} {
		if got := CanonicalUID(tc.raw); got != tc.want {
			t.Errorf("CanonicalUID(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

// decodeUID inverts CanonicalUID, to show it is one-to-one.
func decodeUID(t *testing.T, uid string) string {
	rest, ok := strings.CutPrefix(uid, EscapedPrefix)
	if !ok {
		return uid
	}
	var b strings.Builder
	for i := 0; i < len(rest); i++ {
		if rest[i] != '%' {
			b.WriteByte(rest[i])
			continue
		}
		if i+2 >= len(rest) {
			t.Fatalf("%q: a cut escape", uid)
		}
		v, err := strconv.ParseUint(rest[i+1:i+3], 16, 8)
		if err != nil {
			t.Fatalf("%q: %v", uid, err)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String()
}

func FuzzCanonicalUID(f *testing.F) {
	for _, s := range []string{"abc", "a\rb", "a b", "§", "%41", "\xff", "§%41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := CanonicalUID(raw)
		if decodeUID(t, got) != raw {
			t.Fatalf("CanonicalUID(%q) = %q does not decode back", raw, got)
		}
		for i := 0; i < len(got); i++ {
			if c := got[i]; c <= ' ' || c == 0x7f {
				t.Fatalf("CanonicalUID(%q) = %q holds %q", raw, got, c)
			}
		}
		if strings.HasPrefix(raw, EscapedPrefix) && got == raw {
			t.Fatalf("a raw UID with the prefix was kept as is: %q", raw)
		}
	})
}

// TestTimeoutErrorSaysWhat: a timeout names the server, what the client
// waited for and the timeout; a command's argument only when it is a
// message number or a mechanism, never a password.
func TestTimeoutErrorSaysWhat(t *testing.T) {
	for _, tc := range []struct{ verb, arg, want string }{
		{"greeting", "", "reading the greeting"},
		{"UIDL", "", "reading the reply to UIDL"},
		{"RETR", "7", "reading the reply to RETR 7"},
		{"PASS", "s3cret", "reading the reply to PASS"},
		{"APOP", "me 0123abcd", "reading the reply to APOP"},
		{"AUTH", "PLAIN AGFsaWNlAHMzY3JldA==", "reading the reply to AUTH PLAIN"},
	} {
		if got := doing(tc.verb, tc.arg); got != tc.want {
			t.Errorf("doing(%q, %q) = %q, want %q", tc.verb, tc.arg, got, tc.want)
		}
	}
	e := &TimeoutError{Addr: "pop.example.com:995", Doing: doing("UIDL", ""), After: 5 * time.Second, Err: os.ErrDeadlineExceeded}
	if got, want := e.Error(), "timed out after 5s waiting for pop.example.com:995 (reading the reply to UIDL)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var ne net.Error
	if !errors.As(error(e), &ne) || !ne.Timeout() || !errors.Is(e, os.ErrDeadlineExceeded) {
		t.Error("a TimeoutError is not a net.Error that times out, or hides its cause")
	}
}
