package delayline

import (
	"bufio"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// echoServer answers each line with "+OK line".
func echoServer(t *testing.T) string { return lineServer(t, false, 0) }

// splitLoginServer answers a pipelined "USER\r\nPASS\r\n" as Dovecot
// does: USER at once, PASS 2 ms later in a write of its own, with
// Nagle's algorithm on, so that the second reply waits for the ACK of
// the first.
func splitLoginServer(t *testing.T) string { return lineServer(t, true, 2*time.Millisecond) }

// lineServer greets, then answers each line with "+OK line", a write per
// line; with nagle its connections keep Nagle's algorithm on, and a line
// starting with PASS is answered after passPause.
func lineServer(t *testing.T, nagle bool, passPause time.Duration) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if nagle {
					c.(*net.TCPConn).SetNoDelay(false)
				}
				c.Write([]byte("+OK hello\r\n"))
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if strings.HasPrefix(line, "PASS") {
						time.Sleep(passPause)
					}
					c.Write([]byte("+OK " + line))
				}
			}()
		}
	}()
	return l.Addr().String()
}

func TestRoundTrips(t *testing.T) {
	const oneWay = 20 * time.Millisecond
	d, err := New(echoServer(t), oneWay)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c, err := net.Dial("tcp", d.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	// Stop and wait: one round trip per command, each a full RTT.
	start := time.Now()
	for i := 0; i < 5; i++ {
		c.Write([]byte("NOOP\r\n"))
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK NOOP") {
			t.Fatalf("%q, %v", line, err)
		}
	}
	if took := time.Since(start); took < 5*2*oneWay {
		t.Errorf("5 exchanges took %v, less than 5 round trips of %v", took, 2*oneWay)
	}
	if n := d.RoundTrips(); n != 5 {
		t.Errorf("stop-and-wait: %d round trips, want 5", n)
	}
	// Pipelined: five commands at once are one round trip.
	d.Reset()
	c.Write([]byte(strings.Repeat("NOOP\r\n", 5)))
	for i := 0; i < 5; i++ {
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.RoundTrips(); n != 1 {
		t.Errorf("pipelined: %d round trips, want 1", n)
	}
}

// TestServerRepliesDoNotWaitForTheLinesACK: the line acknowledges the
// server's data as a client that acknowledges at once would, so that a
// reply held by Nagle's algorithm comes a round trip after the one
// before it, not when the line's kernel gets round to a delayed ACK
// (40 ms). The quickest of five logins is checked against the limit, so
// that a busy machine does not fail it; the slowest against the floor, so
// that a rare early ACK does not either (about one login in 50 to 500
// here, cause not found), while a line that acknowledges early every
// time does.
func TestServerRepliesDoNotWaitForTheLinesACK(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("TCP_QUICKACK is Linux's")
	}
	for _, oneWay := range []time.Duration{0, 5 * time.Millisecond} {
		d, err := New(splitLoginServer(t), oneWay)
		if err != nil {
			t.Fatal(err)
		}
		var took []time.Duration
		for range 5 {
			c, err := net.Dial("tcp", d.Addr())
			if err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(c)
			r.ReadString('\n')
			c.Write([]byte("CAPA\r\n")) // an exchange first, as a session has
			r.ReadString('\n')
			start := time.Now()
			c.Write([]byte("USER u\r\nPASS p\r\n"))
			r.ReadString('\n')
			if _, err := r.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
			took = append(took, time.Since(start))
			c.Close()
		}
		d.Close()
		best, slowest := slices.Min(took), slices.Max(took)
		// Two round trips (the reply to USER, then PASS's once the ACK of
		// the first is back) and the server's 2 ms: what a wire gives
		// a client that acknowledges at once. Not less: the line must
		// not acknowledge sooner than such a client could.
		if limit := 4*oneWay + 20*time.Millisecond; best > limit {
			t.Errorf("one-way %v: the quickest login took %v (more than %v): PASS's reply waited for a delayed ACK", oneWay, best, limit)
		}
		if floor := 4 * oneWay; slowest < floor {
			t.Errorf("one-way %v: the slowest login took %v (less than %v): the line acknowledged sooner than a client could", oneWay, slowest, floor)
		}
		t.Logf("one-way %v: logins took %v", oneWay, took)
	}
}
