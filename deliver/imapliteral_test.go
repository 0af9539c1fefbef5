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
