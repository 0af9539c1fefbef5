package fetch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// hostileServer is a POP3 server that logs anyone in and answers UIDL with
// whatever uidl writes. It allocates nothing per request, so that the
// client's allocations can be measured in the same process.
func hostileServer(t *testing.T, uidl func(w io.Writer)) (host string, port int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(conn)
		io.WriteString(conn, "+OK hostile\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch verb, _, _ := strings.Cut(strings.TrimSpace(line), " "); verb {
			case "CAPA":
				io.WriteString(conn, "+OK\r\nUIDL\r\nUSER\r\n.\r\n")
			case "UIDL":
				io.WriteString(conn, "+OK\r\n")
				uidl(conn)
			case "QUIT":
				io.WriteString(conn, "+OK\r\n")
				return
			default:
				io.WriteString(conn, "+OK\r\n")
			}
		}
	}()
	return splitAddr(t, l.Addr().String())
}

// pollAllocs polls the hostile server and returns the error and the bytes
// the poll allocated.
func pollAllocs(t *testing.T, host string, port int) (error, uint64) {
	t.Helper()
	f := newFixture(t, pop3test.Config{}, nil)
	f.acct.Server, f.acct.Port, f.acct.Pipelining = host, port, PipeliningOff
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Poll(context.Background(), f.acct, f.store, f.md, nil)
	runtime.ReadMemStats(&after)
	return err, after.TotalAlloc - before.TotalAlloc
}

// CVE-2005-2335 (fetchmail): a UIDL line longer than the buffer. A 10 MiB
// line is a clean protocol error, and reading it allocates a bounded
// amount, not the line.
func TestRegressionUIDLLine10MiB(t *testing.T) {
	line := append([]byte("1 "), bytes.Repeat([]byte("u"), 10<<20)...)
	line = append(line, "\r\n.\r\n"...)
	host, port := hostileServer(t, func(w io.Writer) { w.Write(line) })
	err, alloc := pollAllocs(t, host, port)
	var perr *pop3.ProtocolError
	if kindOf(err) != KindProtocol || !errors.As(err, &perr) || !strings.Contains(err.Error(), "longer than the limit") {
		t.Fatalf("err = %v", err)
	}
	if alloc > 1<<20 {
		t.Fatalf("the poll allocated %d bytes for a 10 MiB line", alloc)
	}
	t.Logf("10 MiB UIDL line: %v; the poll allocated %d KiB", err, alloc>>10)
}

// 100,000 messages with one UID: refused at the second, and the rest of
// the listing is read without being kept.
func TestRegressionDuplicateUIDs100k(t *testing.T) {
	var listing bytes.Buffer
	for i := 1; i <= 100_000; i++ {
		listing.WriteString(strconv.Itoa(i) + " same-uid\r\n")
	}
	listing.WriteString(".\r\n")
	data := listing.Bytes()
	host, port := hostileServer(t, func(w io.Writer) { w.Write(data) })
	err, alloc := pollAllocs(t, host, port)
	if kindOf(err) != KindProtocol || !strings.Contains(err.Error(), `UID "same-uid" is used by more than one message (1 and 2)`) {
		t.Fatalf("err = %v", err)
	}
	if alloc > 1<<20 {
		t.Fatalf("the poll allocated %d bytes", alloc)
	}
	t.Logf("100,000 duplicate UIDs: %v; the poll allocated %d KiB", err, alloc>>10)
}

// A listing that never ends is cut off at MaxListingLines.
func TestRegressionEndlessListing(t *testing.T) {
	chunk := []byte(strings.Repeat("1 x\r\n", 1000))
	host, port := hostileServer(t, func(w io.Writer) {
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	err, _ := pollAllocs(t, host, port)
	if kindOf(err) != KindProtocol || !strings.Contains(err.Error(), "listing longer than") {
		t.Fatalf("err = %v", err)
	}
}

// CVE-2007-1558: APOP with a timestamp that is not a valid msg-id would
// let a man in the middle recover the password character by character.
// auth = "apop" refuses such a greeting and sends no credentials.
func TestRegressionAPOPMalformedTimestamp(t *testing.T) {
	for _, greeting := range []string{
		"+OK ready", "+OK ready <>", "+OK ready <1896.697170952@>", "+OK ready <@host>",
		"+OK ready <a@b@c>", "+OK ready <no-at-sign>", "+OK ready <1.2@host", "+OK ready <1.2\x01@host>",
		"+OK ready <1 2@host>", "+OK ready <1.2@h\xc3\xa9>",
	} {
		f := newFixture(t, pop3test.Config{APOP: true, Greeting: greeting}, testMessages(1))
		f.acct.Auth = AuthAPOP
		_, err := f.poll()
		if !errors.Is(err, pop3.ErrNoAPOP) || kindOf(err) != KindProtocol {
			t.Fatalf("greeting %q: err = %v", greeting, err)
		}
		for _, c := range f.srv.Commands() {
			if strings.HasPrefix(c, "APOP") || strings.HasPrefix(c, "USER") || strings.HasPrefix(c, "PASS") || strings.HasPrefix(c, "AUTH") {
				t.Fatalf("greeting %q: sent %q", greeting, c)
			}
		}
	}
}

// TestListerRefusesDuplicates: a UID used twice far apart in the listing
// (found once the listing is in, from the sorted hashes), a number listed
// twice out of order, and a number no listing can have are protocol errors
// before anything is fetched or deleted.
func TestListerRefusesDuplicates(t *testing.T) {
	for _, c := range []struct{ name, listing, want string }{
		{"uid far apart", "1 a\r\n2 b\r\n3 c\r\n4 a\r\n.\r\n", `UID "a" is used by more than one message (1 and 4)`},
		{"number twice", "3 a\r\n1 b\r\n2 c\r\n3 d\r\n.\r\n", "message 3 listed twice"},
		{"number too large", "1 a\r\n99999999999 b\r\n.\r\n", "a listing has at most"},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := []byte(c.listing)
			host, port := hostileServer(t, func(w io.Writer) { w.Write(data) })
			err, _ := pollAllocs(t, host, port)
			if kindOf(err) != KindProtocol || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}
