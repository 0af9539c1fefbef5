package pop3test_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// waitUnlocked waits, up to 5 s, for the session a test closed to let go
// of the mailbox: a fixed pause lost that race on a loaded machine, and
// the next login got the in-use reply.
func waitUnlocked(t *testing.T, srv *pop3test.Server) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); srv.Locked(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the closed session still holds the mailbox after 5 s")
		}
	}
}

func login(t *testing.T, srv *pop3test.Server) *pop3.Client {
	t.Helper()
	ctx := context.Background()
	c, err := pop3.Dial(ctx, srv.Addr(), &pop3.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.User(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	if err := c.Pass(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMailboxSemantics(t *testing.T) {
	srv, err := pop3test.NewServer(pop3test.Config{User: "u", Password: "p"},
		pop3test.Message{UID: "a", Data: []byte("Subject: a\n\n.dot\nbody\n")},
		pop3test.Message{UID: "b", Data: []byte("Subject: b\r\n\r\nno final newline")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()

	c := login(t, srv)
	// A second session is refused while the first holds the mailbox.
	c2, err := pop3.Dial(ctx, srv.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c2.User(ctx, "u")
	var perr *pop3.Error
	if err := c2.Pass(ctx, "p"); !errors.As(err, &perr) || perr.Code != pop3.CodeInUse {
		t.Fatalf("second login: %v, want IN-USE", err)
	}
	c2.Close()

	list, err := c.List(ctx)
	if err != nil || len(list) != 2 || list[0].Size != int64(len("Subject: a\r\n\r\n.dot\r\nbody\r\n")) {
		t.Fatalf("LIST = %v, %v", list, err)
	}
	for i, want := range []string{"Subject: a\n\n.dot\nbody\n", "Subject: b\n\nno final newline\n"} {
		m, err := c.Retr(ctx, i+1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(m)
		if err != nil || string(got) != want {
			t.Fatalf("RETR %d = %q, %v", i+1, got, err)
		}
	}
	// DELE without QUIT changes nothing.
	if err := c.Dele(ctx, 1); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitUnlocked(t, srv)
	if n := len(srv.Messages()); n != 2 {
		t.Fatalf("after a dropped session %d messages, want 2", n)
	}
	// DELE then QUIT removes the message.
	c = login(t, srv)
	if err := c.Dele(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if msgs := srv.Messages(); len(msgs) != 1 || msgs[0].UID != "b" {
		t.Fatalf("after QUIT: %v", msgs)
	}
}

func TestServerFaults(t *testing.T) {
	srv, err := pop3test.NewServer(pop3test.Config{User: "u", Password: "p"},
		pop3test.Message{UID: "a", Data: []byte("Subject: a\n\nbody body body\n")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()

	srv.SetFaults(pop3test.Fault{Command: "RETR", Nth: 1, Action: pop3test.DropAfter, Bytes: 20})
	c := login(t, srv)
	m, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(m); !errors.Is(err, pop3.ErrTruncated) {
		t.Fatalf("DropAfter: %v, want ErrTruncated", err)
	}
	c.Close()

	srv.SetFaults(pop3test.Fault{Command: "STAT", Action: pop3test.Reply, Reply: "-ERR [SYS/TEMP] disk"})
	waitUnlocked(t, srv)
	c = login(t, srv)
	var perr *pop3.Error
	if _, _, err := c.Stat(ctx); !errors.As(err, &perr) || !perr.Temporary() {
		t.Fatalf("Reply fault: %v", err)
	}
	srv.SetFaults(pop3test.Fault{Command: "NOOP", Action: pop3test.Garbage})
	var protoErr *pop3.ProtocolError
	if err := c.Noop(ctx); !errors.As(err, &protoErr) {
		t.Fatalf("Garbage fault: %v", err)
	}
	c.Close()
	if srv.Count("RETR") != 1 || srv.Sessions() != 2 {
		t.Errorf("counts: RETR %d sessions %d", srv.Count("RETR"), srv.Sessions())
	}

	// Mute answers nothing more, however long the client waits, and
	// still lets the server close.
	srv.SetFaults(pop3test.Fault{Command: "NOOP", Action: pop3test.Mute})
	c = login(t, srv)
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := c.Noop(tctx); err == nil {
		t.Fatal("Mute fault: NOOP answered")
	}
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs on a muted session")
	}
	c.Close()
}

func TestSTLSAndAPOP(t *testing.T) {
	cert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pop3test.NewServer(pop3test.Config{User: "u", Password: "p", STLS: cert.ServerConfig(), APOP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	c, err := pop3.Dial(ctx, srv.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartTLS(ctx, cert.ClientConfig("127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if err := c.APOP(ctx, "u", "p"); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
}
