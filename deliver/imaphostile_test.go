package deliver

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeIMAP is a scripted IMAP server on a loopback port, without TLS:
// script reads the client's lines and answers as a hostile server would.
func fakeIMAP(t *testing.T, script func(c net.Conn, r *bufio.Reader)) *IMAP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		script(c, bufio.NewReader(c))
	}()
	return &IMAP{Addr: ln.Addr().String(), TLS: IMAPNone, AllowInsecureAuth: true, User: "u",
		Password: func(context.Context) (string, error) { return "p", nil },
		Timeout:  5 * time.Second, SpoolDir: t.TempDir()}
}

// tagOf returns the tag of a client's command line.
func tagOf(line string) string {
	tag, _, _ := strings.Cut(line, " ")
	return tag
}

// TestIMAPHugeResponseLine: a server that sends a response line without
// end is cut off, not read into memory.
func TestIMAPHugeResponseLine(t *testing.T) {
	m := fakeIMAP(t, func(c net.Conn, r *bufio.Reader) {
		c.Write([]byte("* OK "))
		chunk := []byte(strings.Repeat("A", 1<<20))
		for i := 0; i < 64; i++ {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
		c.Write([]byte("\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag := tagOf(line)
			switch {
			case strings.Contains(line, "CAPABILITY"):
				c.Write([]byte("* CAPABILITY IMAP4rev1\r\n" + tag + " OK\r\n"))
			case strings.Contains(line, "STATUS"):
				c.Write([]byte("* STATUS INBOX (UIDNEXT 1 UIDVALIDITY 1)\r\n" + tag + " OK\r\n"))
			default:
				c.Write([]byte(tag + " OK\r\n"))
			}
		}
	})
	defer m.Close()
	s, err := m.Stage(context.Background(), strings.NewReader("Subject: x\n\nhi\n"), Envelope{})
	if err == nil {
		s.Abort()
		t.Fatal("a 64 MiB greeting was taken")
	}
	if !strings.Contains(err.Error(), "too long") {
		t.Errorf("error %v, want one that says the line is too long", err)
	}
}
