package delayline

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// echoServer answers each line with "+OK line".
func echoServer(t *testing.T) string {
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
				c.Write([]byte("+OK hello\r\n"))
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
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
