package deliver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// literalLiar is an IMAP server that advertises LITERAL+ and, as mode
// says, does or does not honour it:
//
//   - "honest": it reads every non-synchronizing literal;
//   - "bad": it answers BAD to a command line that ends in "{N+}" and
//     reads what follows (the literal's octets) as commands;
//   - "plus": it answers "{N+}" with a continuation request, as if it
//     were "{N}" (a proxy that knows only synchronizing literals);
//   - "appendbad": it honours LITERAL+ except for APPEND, which gets BAD,
//     the message then read as commands;
//   - "plain": it does not advertise LITERAL+;
//   - "bracetext": as "honest", and its untagged OK to STATUS has
//     text that ends in "{99999}";
//   - "okfirst": as "bad", and it answers OK to an APPEND with a
//     synchronizing literal at once, without its "+" (the literal never
//     comes).
//
// Every line it reads in the place of a command is kept in cmds; a
// command it does not know is "run" (OK), as a server that executes a
// message's "x DELETE INBOX" would.
type literalLiar struct {
	mode string

	mu       sync.Mutex
	cmds     []string
	appended []string
	sessions int
	closed   chan struct{} // a session ended by the client (EOF)
}

func newLiteralLiar(t *testing.T, mode string) (*literalLiar, *IMAP) {
	t.Helper()
	f := &literalLiar{mode: mode, closed: make(chan struct{}, 16)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	m := &IMAP{Addr: ln.Addr().String(), TLS: IMAPNone, AllowInsecureAuth: true, User: "u",
		Password: func(context.Context) (string, error) { return "p", nil },
		Timeout:  5 * time.Second, SpoolDir: t.TempDir()}
	return f, m
}

func (f *literalLiar) serve(c net.Conn) {
	defer c.Close()
	f.mu.Lock()
	f.sessions++
	f.mu.Unlock()
	r := bufio.NewReader(c)
	caps := "IMAP4rev1 LITERAL+ UIDPLUS"
	if f.mode == "plain" {
		caps = "IMAP4rev1 UIDPLUS"
	}
	c.Write([]byte("* OK [CAPABILITY " + caps + "] liar\r\n"))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			f.closed <- struct{}{}
			return
		}
		f.mu.Lock()
		f.cmds = append(f.cmds, line)
		f.mu.Unlock()
		fields := strings.Fields(line)
		tag, cmd := tagOf(line), ""
		if len(fields) > 1 {
			cmd = strings.ToUpper(fields[1])
		}
		var lit []byte
		if m := literalRE.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			nonSync := strings.HasSuffix(line, "+}\r\n")
			switch {
			case f.mode == "okfirst" && !nonSync && cmd == "APPEND":
				// Answered before the "+": the literal never comes.
				fmt.Fprintf(c, "%s OK [APPENDUID 7 1] done\r\n", tag)
				continue
			case !nonSync, f.mode == "plus":
				c.Write([]byte("+ go ahead\r\n"))
			case f.mode == "bad", f.mode == "okfirst", f.mode == "appendbad" && cmd == "APPEND":
				fmt.Fprintf(c, "%s BAD unknown literal syntax\r\n", tag)
				continue // the literal's lines come next, as commands
			}
			lit = make([]byte, n)
			if _, err := io.ReadFull(r, lit); err != nil {
				return
			}
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
		}
		switch cmd {
		case "CAPABILITY":
			fmt.Fprintf(c, "* CAPABILITY %s\r\n%s OK\r\n", caps, tag)
		case "STATUS":
			f.mu.Lock()
			next := len(f.appended) + 1
			f.mu.Unlock()
			if f.mode == "bracetext" {
				// Text that ends as a literal's announcement does,
				// in a status response: go-imap reads no literal
				// there.
				c.Write([]byte("* OK [ALERT] quota at 90% {99999}\r\n"))
			}
			fmt.Fprintf(c, "* STATUS INBOX (UIDNEXT %d UIDVALIDITY 7)\r\n%s OK\r\n", next, tag)
		case "APPEND":
			f.mu.Lock()
			f.appended = append(f.appended, string(lit))
			uid := len(f.appended)
			f.mu.Unlock()
			fmt.Fprintf(c, "%s OK [APPENDUID 7 %d] done\r\n", tag, uid)
		case "LOGOUT":
			f.closed <- struct{}{}
			fmt.Fprintf(c, "* BYE\r\n%s OK\r\n", tag)
			return
		default:
			fmt.Fprintf(c, "%s OK done\r\n", tag)
		}
	}
}

// literalMessages are messages whose lines are IMAP commands, one small
// (go-imap's own non-synchronizing literal, up to 4096 octets) and one
// large (over 4096: go-imap's synchronizing one).
func literalMessages() []string {
	small := "Subject: small\n\nx DELETE INBOX\ny LOGOUT\n"
	large := "Subject: large\n\n" + strings.Repeat("z DELETE INBOX\n", 400) + "w EXPUNGE\n"
	return []string{small, large}
}

// deliverAll stages, publishes and flushes msgs in one batch.
func deliverAll(ctx context.Context, m *IMAP, msgs []string) error {
	for _, msg := range msgs {
		s, err := m.Stage(ctx, strings.NewReader(msg), Envelope{})
		if err != nil {
			return err
		}
		if err := s.Publish(ctx); err != nil {
			return err
		}
	}
	return m.Flush()
}

// fromMessages returns the command lines the server read that came
// from a message.
func (f *literalLiar) fromMessages() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var bad []string
	for _, c := range f.cmds {
		if strings.Contains(c, "DELETE") || strings.Contains(c, "EXPUNGE") || strings.HasPrefix(c, "y ") || strings.HasPrefix(c, "Subject") {
			bad = append(bad, c)
		}
	}
	return bad
}

// TestIMAPLiteralPlusLiar: a server that advertises LITERAL+ and does
// not honour it never reads a line of a message as a command: the probe
// (a LIST whose pattern, read as a command, is a lone tag) catches it
// before any message goes out, and the messages then go with
// synchronizing literals, each once, none lost.
func TestIMAPLiteralPlusLiar(t *testing.T) {
	for _, tc := range []struct {
		mode     string
		sessions int // a second one when the probe failed
	}{
		{"honest", 1},
		{"bad", 2},
		{"plus", 2},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			f, m := newLiteralLiar(t, tc.mode)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			msgs := literalMessages()
			err := deliverAll(ctx, m, msgs)
			m.Close()
			if bad := f.fromMessages(); len(bad) > 0 {
				t.Errorf("the server ran lines of a message as commands: %.200q", bad)
			}
			if err != nil {
				t.Fatalf("delivery: %v", err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.appended) != len(msgs) {
				t.Fatalf("%d messages appended, want %d (none lost, none twice)", len(f.appended), len(msgs))
			}
			for i, msg := range msgs {
				if want := strings.ReplaceAll(msg, "\n", "\r\n"); f.appended[i] != want {
					t.Errorf("message %d appended as %.60q, want %.60q", i, f.appended[i], want)
				}
			}
			if f.sessions != tc.sessions {
				t.Errorf("%d sessions, want %d", f.sessions, tc.sessions)
			}
			nonSync := 0
			for _, c := range f.cmds {
				if strings.Contains(strings.ToUpper(c), " APPEND ") && strings.HasSuffix(c, "+}\r\n") {
					nonSync++
				}
			}
			if tc.mode != "honest" && nonSync > 0 {
				t.Errorf("%d APPENDs sent with a non-synchronizing literal to a server that failed the probe", nonSync)
			}
			if tc.mode == "honest" && nonSync != len(msgs) {
				t.Errorf("%d of %d APPENDs sent non-synchronizing to an honest LITERAL+ server: the pipelining is lost", nonSync, len(msgs))
			}
		})
	}
}

// TestIMAPLiteralPlusLiarNextSession: once caught, the server gets no
// probe and no non-synchronizing literal for the IMAP value's life.
func TestIMAPLiteralPlusLiarNextSession(t *testing.T) {
	f, m := newLiteralLiar(t, "bad")
	ctx := context.Background()
	msgs := literalMessages()
	if err := deliverAll(ctx, m, msgs[:1]); err != nil {
		t.Fatal(err)
	}
	m.Close()
	f.mu.Lock()
	f.cmds = nil
	f.mu.Unlock()
	if err := deliverAll(ctx, m, msgs[1:]); err != nil {
		t.Fatal(err)
	}
	m.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.cmds {
		if strings.HasSuffix(c, "+}\r\n") || strings.Contains(c, "LIST") {
			t.Errorf("after the probe failed, the next session sent %.80q", c)
		}
	}
	if f.sessions != 3 || len(f.appended) != 2 {
		t.Errorf("%d sessions, %d messages appended; want 3 and 2", f.sessions, len(f.appended))
	}
}

// TestIMAPLiteralPlusRefusedAppend: a server that passes the probe and
// then answers BAD to an APPEND sent with a non-synchronizing literal.
// What was sent is in TCP already and cannot be called back; the client
// closes the connection at once (no more octets), the batch fails as
// the IMAP server's fault, and nothing counts as delivered.
func TestIMAPLiteralPlusRefusedAppend(t *testing.T) {
	f, m := newLiteralLiar(t, "appendbad")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := deliverAll(ctx, m, literalMessages()[1:])
	if err == nil {
		t.Fatal("a BAD to an APPEND was taken as delivered")
	}
	var de *Error
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "IMAP server") || !strings.Contains(err.Error(), "does not honour") {
		t.Errorf("error %v: want the IMAP server's fault, saying it does not honour LITERAL+", err)
	}
	select {
	case <-f.closed:
		// The large message's lines come after its first: the client
		// cannot call back what TCP carries, but it sends no more.
	case <-time.After(5 * time.Second):
		t.Error("the client did not close the connection after the BAD")
	}
	m.Close()
	f.mu.Lock()
	if len(f.appended) != 0 {
		t.Errorf("%d messages appended", len(f.appended))
	}
	f.mu.Unlock()
	// The next poll (a new IMAP value for the same target, as the
	// daemon makes them) sends synchronizing literals only, and the
	// message left on the POP3 server arrives, once.
	m2 := &IMAP{Addr: m.Addr, TLS: IMAPNone, AllowInsecureAuth: true, User: "u", Password: m.Password,
		Timeout: 5 * time.Second, SpoolDir: t.TempDir(), Literals: m.trust()}
	if err := deliverAll(ctx, m2, literalMessages()[1:]); err != nil {
		t.Fatalf("the retry: %v", err)
	}
	m2.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.appended) != 1 {
		t.Errorf("%d messages appended after the retry, want 1", len(f.appended))
	}
}

// TestIMAPLiteralPlusLiarConcurrent: two accounts delivering into one
// lying server at once, sharing what is known of it (as the daemon's
// targets can), each get their messages in once, and no line of a
// message runs as a command.
func TestIMAPLiteralPlusLiarConcurrent(t *testing.T) {
	f, m1 := newLiteralLiar(t, "bad")
	trust := &LiteralTrust{}
	m1.Literals = trust
	m2 := &IMAP{Addr: m1.Addr, TLS: IMAPNone, AllowInsecureAuth: true, User: "u2", Password: m1.Password,
		Timeout: 5 * time.Second, SpoolDir: t.TempDir(), Literals: trust}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs := literalMessages()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, m := range []*IMAP{m1, m2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = deliverAll(ctx, m, msgs)
			m.Close()
		}()
	}
	wg.Wait()
	if bad := f.fromMessages(); len(bad) > 0 {
		t.Errorf("the server ran lines of a message as commands: %.200q", bad)
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("account %d: %v", i+1, err)
		}
	}
	if trust.Distrusted() == nil {
		t.Error("the shared LiteralTrust does not remember the liar")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	count := map[string]int{}
	for _, a := range f.appended {
		count[a]++
	}
	for _, msg := range msgs {
		if n := count[strings.ReplaceAll(msg, "\n", "\r\n")]; n != 2 {
			t.Errorf("message %.20q appended %d times, want 2 (once per account)", msg, n)
		}
	}
}

// TestIMAPLiteralHeldAnsweredOK: a server that failed the probe gets
// go-imap's small non-synchronizing literals as synchronizing ones, the
// octets held until its "+". One that answers OK to such an APPEND
// before its "+" has not been sent the message: the APPEND must not
// count as delivered (the POP3 side would delete the message).
func TestIMAPLiteralHeldAnsweredOK(t *testing.T) {
	for i := 0; i < 5; i++ {
		f, m := newLiteralLiar(t, "okfirst")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := deliverAll(ctx, m, literalMessages()[:1])
		m.Close()
		cancel()
		f.mu.Lock()
		n := len(f.appended)
		f.mu.Unlock()
		if err == nil && n == 0 {
			t.Fatalf("try %d: an APPEND answered OK before its literal was sent counts as delivered", i)
		}
	}
}

// TestIMAPLiteralPlusLiarLogin: a password with 8-bit characters goes
// as a literal (go-imap cannot quote it); before the probe, it goes
// synchronizing, so that a server that does not honour LITERAL+ never
// reads the password as a command line, and the login works.
func TestIMAPLiteralPlusLiarLogin(t *testing.T) {
	const pw = "p\u00e4sswort"
	f, m := newLiteralLiar(t, "bad")
	m.Password = func(context.Context) (string, error) { return pw, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := deliverAll(ctx, m, literalMessages()[:1])
	m.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.cmds {
		if strings.Contains(c, "LOGIN") && strings.HasSuffix(c, "+}\r\n") || strings.HasPrefix(c, pw) {
			t.Errorf("the password went non-synchronizing before the probe: the server read %.80q", c)
		}
	}
	if err != nil {
		t.Fatalf("delivery: %v", err)
	}
	if len(f.appended) != 1 {
		t.Errorf("%d messages appended, want 1", len(f.appended))
	}
}

// TestIMAPLiteralEmptyMessage: an empty message (add_received = false,
// a message of no octets) goes as "{0}", which waits for the server's
// "+" like any synchronizing literal: that "+" is not one that no
// literal asked for, and the server is not taken for a liar.
func TestIMAPLiteralEmptyMessage(t *testing.T) {
	for _, mode := range []string{"plain", "honest", "bad"} {
		t.Run(mode, func(t *testing.T) {
			f, m := newLiteralLiar(t, mode)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := deliverAll(ctx, m, []string{""})
			m.Close()
			if err != nil {
				t.Fatalf("delivery: %v", err)
			}
			if mode != "bad" && m.trust().Distrusted() != nil {
				t.Errorf("distrusted: %v", m.trust().Distrusted())
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.appended) != 1 || f.appended[0] != "" {
				t.Errorf("appended %q, want one empty message", f.appended)
			}
		})
	}
}

// TestIMAPLiteralBraceText: a status response whose text ends in what
// looks like a literal's announcement ("{99999}") announces none, for
// go-imap; the shim that took the next 99999 octets for a literal
// never found the boundary to put its local "+" at, and the large
// message's APPEND waited for the timeout and failed.
func TestIMAPLiteralBraceText(t *testing.T) {
	f, m := newLiteralLiar(t, "bracetext")
	m.Timeout = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs := literalMessages()
	err := deliverAll(ctx, m, msgs)
	m.Close()
	if err != nil {
		t.Fatalf("delivery: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.appended) != len(msgs) {
		t.Errorf("%d messages appended, want %d", len(f.appended), len(msgs))
	}
}
