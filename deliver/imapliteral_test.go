package deliver

import (
	"bufio"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLiteralAt(t *testing.T) {
	for _, tc := range []struct {
		line string
		want int64
	}{
		{"T1 APPEND INBOX {42}\r", 42}, {"T1 APPEND INBOX {42+}\r", 42}, {"* 1 FETCH (BODY[] {7}\r", 7},
		{"T1 OK done\r", 0}, {"{x}\r", 0}, {"{-1}\r", 0}, {"no brace}\r", 0}, {"", 0}, {"{99999999999999999999}\r", 0},
	} {
		if got := literalAt([]byte(tc.line)); got != tc.want {
			t.Errorf("literalAt(%q) = %d, want %d", tc.line, got, tc.want)
		}
		if _, ok := announced([]byte(tc.line)); ok != (tc.want > 0) {
			t.Errorf("announced(%q) = %v", tc.line, ok)
		}
	}
	if n, ok := announced([]byte("T1 APPEND INBOX {0}\r")); n != 0 || !ok {
		t.Errorf("announced(an empty literal) = %d, %v; want 0, true", n, ok)
	}
}

// TestLiteralPlusConn: a synchronizing literal's announcement goes out
// as LITERAL+, the "+" is answered locally but only between the server's
// responses, and a message's own "{N}" lines are left alone.
func TestLiteralPlusConn(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	l := newLiteralPlusConn(client, "")
	defer l.Close()
	l.trust(math.MaxInt64)
	srv := bufio.NewReader(server)
	// The server is in the middle of a response when the APPEND goes out.
	go server.Write([]byte("* 3 EXI"))
	got := make([]byte, 7)
	if _, err := io.ReadFull(l, got); err != nil || string(got) != "* 3 EXI" {
		t.Fatalf("read %q, %v", got, err)
	}
	body := "Subject: {3}\r\n{3}\r\n"
	go func() {
		l.Write([]byte("T1 APPEND INBOX {" + strconv.Itoa(len(body)) + "}\r\n"))
		l.Write([]byte(body))
		l.Write([]byte("\r\n"))
	}()
	line, _ := srv.ReadString('\n')
	if line != "T1 APPEND INBOX {"+strconv.Itoa(len(body))+"+}\r\n" {
		t.Errorf("sent %q", line)
	}
	rest := make([]byte, len(body)+2)
	if _, err := io.ReadFull(srv, rest); err != nil || string(rest) != body+"\r\n" {
		t.Errorf("literal sent as %q, %v", rest, err)
	}
	// The local "+" waits for the end of the server's line.
	go server.Write([]byte("STS\r\n"))
	r := bufio.NewReader(l)
	if s, _ := r.ReadString('\n'); s != "STS\r\n" {
		t.Errorf("got %q, want the rest of the server's line first", s)
	}
	if s, _ := r.ReadString('\n'); !strings.HasPrefix(s, "+ ") {
		t.Errorf("got %q, want the local continuation", s)
	}
	// Closed: a Read waiting returns.
	done := make(chan error, 1)
	go func() { _, err := r.ReadByte(); done <- err }()
	time.Sleep(10 * time.Millisecond)
	l.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a read after Close succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return after Close")
	}
}

// TestStartTLSInjection: octets after the OK to STARTTLS (an attacker's
// commands, to be read as if they came over TLS) are refused, and so are
// a refusal and a bad greeting.
func TestStartTLSInjection(t *testing.T) {
	for _, tc := range []struct{ name, script, want string }{
		{"injection", "* OK hi\r\nS1 OK go\r\n* OK [CAPABILITY IMAP4rev1] injected\r\n", "more after its OK"},
		{"refused", "* OK hi\r\nS1 BAD no\r\n", "STARTTLS refused"},
		{"greeting", "* BYE go away\r\n", "greeting is not OK"},
		{"ok", "* OK hi\r\n* CAPABILITY IMAP4rev1\r\nS1 OK go\r\n", ""},
	} {
		client, server := net.Pipe()
		go func() {
			// Send the greeting, wait for the command, answer.
			lines := strings.SplitAfter(tc.script, "\r\n")
			server.Write([]byte(lines[0]))
			bufio.NewReader(server).ReadString('\n')
			server.Write([]byte(strings.Join(lines[1:], "")))
		}()
		err := startTLS(client)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		client.Close()
		server.Close()
	}
}

// TestLiteralConnGuard: before a server has passed the probe, no literal
// goes non-synchronizing, whatever go-imap sends; after it, a "+" that
// no literal asked for, or a BAD to a non-synchronizing one, ends the
// session at once.
func TestLiteralConnGuard(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted bool
		client  string // go-imap's command, written in one go
		wire    string // what the server must have read when it answers
		answer  string // the server's answer
		after   string // what the server reads after its answer
		toIMAP  string // what go-imap reads
		err     string // the error of Write or Read, if any
	}{
		{name: "own non-sync held until +", client: "T1 APPEND INBOX {5+}\r\nhello\r\n",
			wire: "T1 APPEND INBOX {5}\r\n", answer: "+ go\r\nT1 OK done\r\n", after: "hello\r\n", toIMAP: "T1 OK done\r\n"},
		{name: "own non-sync refused before the literal", client: "T1 APPEND INBOX {5+}\r\nhello\r\n",
			wire: "T1 APPEND INBOX {5}\r\n", answer: "T1 NO [TRYCREATE] no\r\n", toIMAP: "T1 NO [TRYCREATE] no\r\n", err: "before the literal"},
		{name: "sync passes, its + too", client: "T1 APPEND INBOX {5}\r\n",
			wire: "T1 APPEND INBOX {5}\r\n", answer: "+ go\r\n", toIMAP: "+ go\r\n"},
		{name: "unasked +", trusted: true, client: "T1 APPEND INBOX {5}\r\nhello\r\n",
			wire: "T1 APPEND INBOX {5+}\r\nhello\r\n", answer: "+ go\r\n", toIMAP: "+ popfetch: LITERAL+\r\n", err: "no synchronizing literal asked for"},
		{name: "BAD to non-sync", trusted: true, client: "T1 APPEND INBOX {5+}\r\nhello\r\n",
			wire: "T1 APPEND INBOX {5+}\r\nhello\r\n", answer: "T1 BAD what\r\n", toIMAP: "T1 BAD what\r\n", err: "answered BAD"},
		{name: "probe", client: "T2 LIST \"\" \"popfetch-literal-probe-\"\r\n",
			wire: "T2 LIST \"\" {26+}\r\npopfetch-literal-probe-xxx\r\n", answer: "T2 OK done\r\n", toIMAP: "T2 OK done\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer server.Close()
			l := newLiteralPlusConn(client, "")
			defer l.Close()
			l.arm()
			if tc.trusted {
				l.trust(math.MaxInt64)
			}
			if tc.name == "probe" {
				l.probe(`"popfetch-literal-probe-"`, "popfetch-literal-probe-xxx")
			}
			werr := make(chan error, 1)
			go func() { _, err := l.Write([]byte(tc.client)); werr <- err }()
			srv := bufio.NewReader(server)
			got := make([]byte, len(tc.wire))
			if _, err := io.ReadFull(srv, got); err != nil || string(got) != tc.wire {
				t.Fatalf("the server read %q, %v; want %q", got, err, tc.wire)
			}
			if strings.HasPrefix(tc.name, "own non-sync") {
				// The literal's octets wait for the server's "+".
				server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				if b, err := srv.ReadByte(); err == nil {
					t.Fatalf("the server read %q before its go-ahead", b)
				}
				server.SetReadDeadline(time.Time{})
			}
			go server.Write([]byte(tc.answer))
			r := bufio.NewReader(l)
			var toIMAP []byte
			var rerr error
			for len(toIMAP) < len(tc.toIMAP) && rerr == nil {
				var b byte
				b, rerr = r.ReadByte()
				if rerr == nil {
					toIMAP = append(toIMAP, b)
				}
			}
			if string(toIMAP) != tc.toIMAP {
				t.Errorf("go-imap read %q (%v), want %q", toIMAP, rerr, tc.toIMAP)
			}
			if tc.after != "" {
				got := make([]byte, len(tc.after))
				if _, err := io.ReadFull(srv, got); err != nil || string(got) != tc.after {
					t.Errorf("after its answer the server read %q, %v; want %q", got, err, tc.after)
				}
			}
			if tc.err == "" {
				return
			}
			// The error shows at the next read, or at the Write.
			var err error
			select {
			case err = <-werr:
			case <-time.After(100 * time.Millisecond):
			}
			if err == nil {
				_, err = r.ReadByte()
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
			if strings.Contains(tc.err, "asked for") || strings.Contains(tc.err, "BAD") {
				// Closed at once: the server reads the end.
				server.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := srv.ReadByte(); err == nil {
					t.Error("the connection is still open, or the client sent more")
				}
			}
		})
	}
}
