package pop3

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// TestPipelinedLoginDoesNotWaitForDelayedACK: against a server that
// answers PASS in a second small write with Nagle's algorithm on (Dovecot:
// pop3-login answers USER, a pop3 process answers PASS), the reply to
// PASS waits until the client acknowledges USER's. A client that
// pipelined both has nothing to send meanwhile, and its kernel delays
// that ACK by 40 ms or more; ackNow sends it at once, on the socket below
// TLS when there is TLS. The server pauses 2 ms before the second reply,
// so a login that does not wait takes a few milliseconds and one that
// does, 40 or more: the best of five is checked, so that a busy machine
// does not fail it.
func TestPipelinedLoginDoesNotWaitForDelayedACK(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("TCP_QUICKACK is Linux's; elsewhere the ACK may be delayed")
	}
	cert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, implicitTLS := range []bool{false, true} {
		cfg := pop3test.Config{User: "u", Password: "secret", Pipelining: true,
			Quirks: pop3test.Quirks{SplitLogin: true}}
		dial := func(ctx context.Context, addr string) (*Client, error) { return Dial(ctx, addr, nil) }
		if implicitTLS {
			cfg.TLS = cert.ServerConfig()
			dial = func(ctx context.Context, addr string) (*Client, error) {
				return DialTLS(ctx, addr, cert.ClientConfig("127.0.0.1"), nil)
			}
		}
		srv, err := pop3test.NewServer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		best := time.Hour
		for range 5 {
			c, err := dial(ctx(t), srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			// Some exchanges first, as a session has (greeting, CAPA): a
			// fresh connection's first ACKs are not delayed.
			if _, err := c.Capa(ctx(t)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := c.Login(ctx(t), "u", "secret", true); err != nil {
				t.Fatal(err)
			}
			best = min(best, time.Since(start))
			if err := c.Quit(ctx(t)); err != nil {
				t.Fatal(err)
			}
		}
		srv.Close()
		if best >= 25*time.Millisecond {
			t.Errorf("TLS %v: the quickest of five pipelined logins took %v: the reply to PASS waited for a delayed ACK", implicitTLS, best)
		}
		t.Logf("TLS %v: quickest pipelined login: %v", implicitTLS, best)
	}
}
