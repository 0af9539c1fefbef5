package deliver

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hostileIMAP is a scripted IMAP server on a loopback port, without TLS:
// script reads the client's lines and answers as a hostile server would.
func hostileIMAP(t *testing.T, script func(c net.Conn, r *bufio.Reader)) *IMAP {
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
	m := hostileIMAP(t, func(c net.Conn, r *bufio.Reader) {
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

// settleServer answers a login, STATUS, EXAMINE and the UID SEARCH and
// UID FETCH of Settle for msgs (UID i+1), with UIDVALIDITY validity.
func settleServer(validity int, msgs []string) func(c net.Conn, r *bufio.Reader) {
	return func(c net.Conn, r *bufio.Reader) {
		c.Write([]byte("* OK [CAPABILITY IMAP4rev1] fake\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, cmd := tagOf(line), strings.ToUpper(line)
			switch {
			case strings.Contains(cmd, "STATUS"):
				fmt.Fprintf(c, "* STATUS INBOX (UIDNEXT %d UIDVALIDITY %d)\r\n%s OK\r\n", len(msgs)+1, validity, tag)
			case strings.Contains(cmd, "EXAMINE"):
				fmt.Fprintf(c, "* %d EXISTS\r\n* OK [UIDVALIDITY %d] x\r\n%s OK [READ-ONLY] done\r\n", len(msgs), validity, tag)
			case strings.Contains(cmd, "UID SEARCH") && strings.Contains(cmd, "LARGER -"):
				fmt.Fprintf(c, "%s BAD LARGER takes a number (RFC 9051 section 9)\r\n", tag)
			case strings.Contains(cmd, "UID SEARCH"):
				f := strings.Fields(cmd)
				var uids []string
				for i, msg := range msgs {
					n := len(msg)
					ok := true
					for j := range f[:len(f)-1] {
						v, _ := strconv.Atoi(f[j+1])
						switch f[j] {
						case "LARGER":
							ok = ok && n > v
						case "SMALLER":
							ok = ok && n < v
						case "UID":
							// n:* holds the last UID even when n
							// is above it (RFC 9051 section 9, seq-range).
							lo, _, _ := strings.Cut(f[j+1], ":")
							v, _ = strconv.Atoi(lo)
							ok = ok && (i+1 >= v || i+1 == len(msgs))
						}
					}
					if ok {
						uids = append(uids, strconv.Itoa(i+1))
					}
				}
				fmt.Fprintf(c, "* SEARCH %s\r\n%s OK\r\n", strings.Join(uids, " "), tag)
			case strings.Contains(cmd, "UID FETCH"):
				uid, _ := strconv.Atoi(strings.Fields(cmd)[3])
				msg := msgs[uid-1]
				fmt.Fprintf(c, "* %d FETCH (UID %d BODY[] {%d}\r\n%s)\r\n%s OK\r\n", uid, uid, len(msg), msg, tag)
			case strings.Contains(cmd, "LOGOUT"):
				fmt.Fprintf(c, "* BYE\r\n%s OK\r\n", tag)
				return
			default:
				fmt.Fprintf(c, "%s OK\r\n", tag)
			}
		}
	}
}

func imapRef(m *IMAP, msg string, validity, floor int) Ref {
	sum := sha256.Sum256([]byte(msg))
	v := url.Values{}
	v.Set("f", "INBOX")
	v.Set("v", strconv.Itoa(validity))
	v.Set("u", strconv.Itoa(floor))
	v.Set("n", strconv.Itoa(len(msg)))
	v.Set("h", hex.EncodeToString(sum[:]))
	return Ref{Kind: "imap", Target: m.identity(), Key: v.Encode(), Begun: time.Now().Add(-time.Hour)}
}

// TestIMAPSettleNewValidity: when the folder's UIDVALIDITY changed since
// the records were written, their UIDNEXT floors mean nothing, for every
// record, not only the first: each message is looked for in the whole
// folder (else it is reported missing and delivered twice).
func TestIMAPSettleNewValidity(t *testing.T) {
	msgs := []string{"Subject: one\r\n\r\nfirst\r\n", "Subject: two\r\n\r\nthe second\r\n"}
	m := hostileIMAP(t, settleServer(2, msgs))
	defer m.Close()
	refs := []Ref{imapRef(m, msgs[0], 1, 100), imapRef(m, msgs[1], 1, 100)}
	found, err := m.Settle(context.Background(), refs)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range found {
		if !f {
			t.Errorf("message %d, in the folder, reported missing", i+1)
		}
	}
}

// TestIMAPLongErrorText: a refusal's text, the server's, is cut short in
// the error that reaches logs and the status file.
func TestIMAPLongErrorText(t *testing.T) {
	m := hostileIMAP(t, func(c net.Conn, r *bufio.Reader) {
		c.Write([]byte("* OK [CAPABILITY IMAP4rev1] fake\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s NO [AUTHENTICATIONFAILED] %s\r\n", tagOf(line), strings.Repeat("\x1b[31mno ", 50000))
		}
	})
	defer m.Close()
	_, err := m.Stage(context.Background(), strings.NewReader("Subject: x\n\nhi\n"), Envelope{})
	if err == nil {
		t.Fatal("a refused login was taken")
	}
	if n := len(err.Error()); n > 1000 {
		t.Errorf("the error is %d octets long", n)
	}
}

// TestIMAPFlushTrickle: a server that takes an APPEND and then answers a
// byte at a time, never ending its response, cannot hold Flush past the
// end of the poll's context (the per-read timeout never fires).
func TestIMAPFlushTrickle(t *testing.T) {
	m := hostileIMAP(t, func(c net.Conn, r *bufio.Reader) {
		c.Write([]byte("* OK [CAPABILITY IMAP4rev1] fake\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, cmd := tagOf(line), strings.ToUpper(line)
			switch {
			case strings.Contains(cmd, "STATUS"):
				fmt.Fprintf(c, "* STATUS INBOX (UIDNEXT 1 UIDVALIDITY 1)\r\n%s OK\r\n", tag)
			case strings.Contains(cmd, "APPEND"):
				n := literalAt([]byte(strings.TrimSuffix(line, "\n")))
				if !strings.HasSuffix(line, "+}\r\n") {
					c.Write([]byte("+ go\r\n"))
				}
				if _, err := io.CopyN(io.Discard, r, n); err != nil {
					return
				}
				r.ReadString('\n')
				c.Write([]byte("* OK "))
				for {
					time.Sleep(100 * time.Millisecond)
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
				}
			default:
				fmt.Fprintf(c, "%s OK\r\n", tag)
			}
		}
	})
	m.Timeout = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := m.Stage(ctx, strings.NewReader("Subject: x\n\nhi\n"), Envelope{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Flush() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Flush took an APPEND that was never answered")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Flush still waits 8 s after the poll's context ended")
	}
	m.Close()
}

// TestIMAPLogoutTrickle: Close does not wait longer than the timeout for
// a LOGOUT answered a byte at a time.
func TestIMAPLogoutTrickle(t *testing.T) {
	m := hostileIMAP(t, func(c net.Conn, r *bufio.Reader) {
		c.Write([]byte("* OK [CAPABILITY IMAP4rev1] fake\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, cmd := tagOf(line), strings.ToUpper(line)
			switch {
			case strings.Contains(cmd, "STATUS"):
				fmt.Fprintf(c, "* STATUS INBOX (UIDNEXT 1 UIDVALIDITY 1)\r\n%s OK\r\n", tag)
			case strings.Contains(cmd, "LOGOUT"):
				c.Write([]byte("* BYE "))
				for {
					time.Sleep(100 * time.Millisecond)
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
				}
			default:
				fmt.Fprintf(c, "%s OK\r\n", tag)
			}
		}
	})
	m.Timeout = time.Second
	s, err := m.Stage(context.Background(), strings.NewReader("Subject: x\n\nhi\n"), Envelope{})
	if err != nil {
		t.Fatal(err)
	}
	s.Abort()
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(8 * time.Second):
		t.Fatal("Close still waits for LOGOUT's answer after 8 s")
	}
}

// TestIMAPSettleSameIDOtherContent: a message in the folder with the
// pending one's Message-ID and size, but other octets, does not settle
// it: the record is reported missing and the message fetched again.
func TestIMAPSettleSameIDOtherContent(t *testing.T) {
	there := "Message-ID: <a@x>\r\n\r\nAAAA\r\n"
	pending := "Message-ID: <a@x>\r\n\r\nBBBB\r\n"
	m := hostileIMAP(t, settleServer(1, []string{there}))
	defer m.Close()
	r := imapRef(m, pending, 1, 1)
	v, _ := url.ParseQuery(r.Key)
	v.Set("id", "<a@x>")
	r.Key = v.Encode()
	found, err := m.Settle(context.Background(), []Ref{r})
	if err != nil {
		t.Fatal(err)
	}
	if found[0] {
		t.Error("another message with the same Message-ID and size settled the record")
	}
}

// TestIMAPTokenFromPassword: auth = "xoauth2" without an oauth2 table
// takes the token from the password keys (a password_command that
// prints one), as the POP3 side does.
func TestIMAPTokenFromPassword(t *testing.T) {
	got := make(chan string, 1)
	m := hostileIMAP(t, func(c net.Conn, r *bufio.Reader) {
		c.Write([]byte("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR] fake\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, cmd := tagOf(line), strings.ToUpper(line)
			switch {
			case strings.Contains(cmd, "AUTHENTICATE"):
				f := strings.Fields(line)
				got <- f[len(f)-1]
				fmt.Fprintf(c, "%s OK\r\n", tag)
			case strings.Contains(cmd, "STATUS"):
				fmt.Fprintf(c, "* STATUS INBOX (UIDNEXT 1 UIDVALIDITY 1)\r\n%s OK\r\n", tag)
			default:
				fmt.Fprintf(c, "%s OK\r\n", tag)
			}
		}
	})
	m.Auth = IMAPAuthXOAuth2
	m.Password = func(context.Context) (string, error) { return "tok123", nil }
	s, err := m.Stage(context.Background(), strings.NewReader("Subject: x\n\nhi\n"), Envelope{})
	if err != nil {
		t.Fatal(err)
	}
	s.Abort()
	m.Close()
	ir, _ := base64.StdEncoding.DecodeString(<-got)
	if string(ir) != "user=u\x01auth=Bearer tok123\x01\x01" {
		t.Errorf("XOAUTH2 sent %q", ir)
	}
}

// TestIMAPSettleBelowFloor: "UID floor:*" names the folder's last
// message even when its UID is below the floor (a range is unordered):
// a byte-identical copy delivered before the session (the same message
// sent twice, add_received = false) must not settle a record whose
// message never arrived.
func TestIMAPSettleBelowFloor(t *testing.T) {
	msg := "Message-ID: <twice@x>\r\n\r\nsame\r\n"
	m := hostileIMAP(t, settleServer(1, []string{msg}))
	defer m.Close()
	found, err := m.Settle(context.Background(), []Ref{imapRef(m, msg, 1, 2)})
	if err != nil {
		t.Fatal(err)
	}
	if found[0] {
		t.Error("a message below the floor settled the record")
	}
}

// TestIMAPTryCreateClosesSpools: after a [TRYCREATE] retry, the spool
// files of the APPENDs that had succeeded are closed too.
func TestIMAPTryCreateClosesSpools(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no finalizer closes them
	m := hostileIMAP(t, func(c net.Conn, r *bufio.Reader) {
		c.Write([]byte("* OK [CAPABILITY IMAP4rev1] fake\r\n"))
		appends := 0
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, cmd := tagOf(line), strings.ToUpper(line)
			switch {
			case strings.Contains(cmd, "STATUS"):
				fmt.Fprintf(c, "* STATUS INBOX (UIDNEXT 1 UIDVALIDITY 1)\r\n%s OK\r\n", tag)
			case strings.Contains(cmd, "APPEND"):
				n := literalAt([]byte(strings.TrimSuffix(line, "\n")))
				c.Write([]byte("+ go\r\n"))
				io.CopyN(io.Discard, r, n)
				r.ReadString('\n')
				if appends++; appends == 3 {
					fmt.Fprintf(c, "%s NO [TRYCREATE] no folder\r\n", tag)
				} else {
					fmt.Fprintf(c, "%s OK\r\n", tag)
				}
			case strings.Contains(cmd, "LOGOUT"):
				fmt.Fprintf(c, "* BYE\r\n%s OK\r\n", tag)
				return
			default:
				fmt.Fprintf(c, "%s OK\r\n", tag)
			}
		}
	})
	fds := func() int {
		e, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip(err)
		}
		return len(e)
	}
	ctx := context.Background()
	var staged []Staged
	for i := 0; i < 3; i++ {
		s, err := m.Stage(ctx, strings.NewReader(fmt.Sprintf("Subject: %d\n\nhi\n", i)), Envelope{})
		if err != nil {
			t.Fatal(err)
		}
		staged = append(staged, s)
	}
	before := fds()
	for _, s := range staged {
		if err := s.Publish(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	if after := fds(); after != before-3 {
		t.Errorf("%d files open after Flush, want %d (the 3 spools closed)", after, before-3)
	}
	m.Close()
}

// markServer answers the nth APPEND (from 1) with answers[n]: a tagged
// answer such as "OK" or "NO [OVERQUOTA] full", or "hold" to answer OK
// only once release is closed (later answers are not held: IMAP lets a
// server answer commands in any order).
func markServer(t *testing.T, answers map[int]string, release <-chan struct{}) *IMAP {
	return hostileIMAP(t, func(c net.Conn, r *bufio.Reader) {
		c.Write([]byte("* OK [CAPABILITY IMAP4rev1 LITERAL+] fake\r\n"))
		var held []string // tags whose answers wait for release
		appends := 0
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, cmd := tagOf(line), strings.ToUpper(line)
			switch {
			case strings.Contains(cmd, "STATUS"):
				fmt.Fprintf(c, "* STATUS INBOX (UIDNEXT 1 UIDVALIDITY 1)\r\n%s OK\r\n", tag)
			case strings.Contains(cmd, "CAPABILITY"):
				fmt.Fprintf(c, "* CAPABILITY IMAP4rev1 LITERAL+\r\n%s OK\r\n", tag)
			case strings.Contains(cmd, " LIST "):
				// The session's probe of LITERAL+: the pattern comes as a
				// non-synchronizing literal, honoured here.
				if n := literalAt([]byte(strings.TrimSuffix(line, "\n"))); n > 0 {
					if _, err := io.CopyN(io.Discard, r, n); err != nil {
						return
					}
					r.ReadString('\n')
				}
				fmt.Fprintf(c, "%s OK\r\n", tag)
			case strings.Contains(cmd, "APPEND"):
				n := literalAt([]byte(strings.TrimSuffix(line, "\n")))
				if !strings.HasSuffix(line, "+}\r\n") {
					c.Write([]byte("+ go\r\n"))
				}
				if _, err := io.CopyN(io.Discard, r, n); err != nil {
					return
				}
				r.ReadString('\n')
				appends++
				a := answers[appends]
				if a == "" {
					a = "OK"
				}
				if a == "hold" || len(held) > 0 {
					held = append(held, tag+" "+strings.Replace(a, "hold", "OK", 1))
					go func(held []string) {
						<-release
						for _, h := range held {
							fmt.Fprintf(c, "%s\r\n", h)
						}
					}(held)
					held = held[:0:0]
					continue
				}
				fmt.Fprintf(c, "%s %s\r\n", tag, a)
			case strings.Contains(cmd, "LOGOUT"):
				fmt.Fprintf(c, "* BYE\r\n%s OK\r\n", tag)
				return
			default:
				fmt.Fprintf(c, "%s OK\r\n", tag)
			}
		}
	})
}

// publishN stages and publishes n messages.
func publishN(t *testing.T, m *IMAP, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		s, err := m.Stage(ctx, strings.NewReader(fmt.Sprintf("Subject: %d\n\nhi\n", i)), Envelope{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Publish(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// waitWithin runs wait, failing the test if it takes longer than d.
func waitWithin(t *testing.T, d time.Duration, wait func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("the wait still runs after %v", d)
		return nil
	}
}

// TestIMAPMarkOverlaps: the wait a Mark returns reads the answers to the
// APPENDs sent before it, not to those sent after (their answers may be
// held back by the server), so the next batch goes out while the last
// one's answers are on their way; a later wait reports its own failure.
func TestIMAPMarkOverlaps(t *testing.T) {
	release := make(chan struct{})
	m := markServer(t, map[int]string{3: "hold", 5: "NO [OVERQUOTA] mailbox full"}, release)
	defer m.Close()
	if err := waitWithin(t, 5*time.Second, m.Mark()); err != nil {
		t.Fatalf("a wait with nothing published: %v", err)
	}
	publishN(t, m, 2)
	w1 := m.Mark()
	publishN(t, m, 2) // the 3rd is held
	w2 := m.Mark()
	publishN(t, m, 1) // refused
	w3 := m.Mark()
	if err := waitWithin(t, 5*time.Second, w1); err != nil {
		t.Fatalf("the first batch: %v", err)
	}
	close(release)
	if err := waitWithin(t, 5*time.Second, w2); err != nil {
		t.Fatalf("the second batch, once answered: %v", err)
	}
	err := waitWithin(t, 5*time.Second, w3)
	var de *Error
	if !errors.As(err, &de) || !de.Temporary || !strings.Contains(err.Error(), "OVERQUOTA") {
		t.Fatalf("the third batch: %v, want a temporary error naming OVERQUOTA", err)
	}
}

// TestIMAPMarkAfterFailure: when a wait fails, the session is dropped,
// and the APPENDs sent on it after the failing one are not taken as
// delivered by the next wait: it fails too, at once, without hanging.
func TestIMAPMarkAfterFailure(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	m := markServer(t, map[int]string{2: "NO [LIMIT] too big", 3: "hold"}, release)
	defer m.Close()
	publishN(t, m, 2)
	w1 := m.Mark()
	publishN(t, m, 2) // held, on the session w1's failure drops
	w2 := m.Mark()
	if err := waitWithin(t, 5*time.Second, w1); err == nil {
		t.Fatal("the first batch, with a refused APPEND: no error")
	}
	if err := waitWithin(t, 5*time.Second, w2); err == nil {
		t.Fatal("APPENDs sent on a dropped session were taken as delivered")
	}
}

// TestIMAPSettleClockSetBack: a pending record written before the clock
// was set back is ahead of now; Settle waits no more than the grace for
// it, not until the clock catches up (which would hold every poll until
// its ceiling, and fail it, for as long as the clock is behind).
func TestIMAPSettleClockSetBack(t *testing.T) {
	msgs := []string{"Subject: one\r\n\r\nfirst\r\n"}
	m := hostileIMAP(t, settleServer(1, msgs))
	m.SettleGrace = 300 * time.Millisecond
	defer m.Close()
	r := imapRef(m, "Subject: gone\r\n\r\nnot there\r\n", 1, 1)
	r.Begun = time.Now().Add(24 * time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	found, err := m.Settle(ctx, []Ref{r})
	if err != nil || found[0] {
		t.Fatalf("Settle = %v, %v; want [false] once the grace has passed", found, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Settle took %v with a grace of %v", took, m.SettleGrace)
	}
}

// TestIMAPAuthenticateAnsweredEarly: a server that sends its tagged
// answer to AUTHENTICATE along with its "+", before the client's
// response, leaves go-imap's Authenticate waiting for ever (no read
// timeout or closed connection ends it). The login is given up after
// the timeout, as a temporary failure.
func TestIMAPAuthenticateAnsweredEarly(t *testing.T) {
	for _, answer := range []string{"OK early", "NO early"} {
		m := hostileIMAP(t, func(c net.Conn, r *bufio.Reader) {
			c.Write([]byte("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake\r\n"))
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				tag := tagOf(line)
				switch {
				case strings.Contains(line, "AUTHENTICATE"):
					fmt.Fprintf(c, "+ \r\n%s %s\r\n", tag, answer)
				case strings.Contains(line, "STATUS"):
					fmt.Fprintf(c, "* STATUS INBOX (UIDNEXT 1 UIDVALIDITY 1)\r\n%s OK\r\n", tag)
				default:
					fmt.Fprintf(c, "%s OK\r\n", tag)
				}
			}
		})
		m.Auth, m.Timeout = IMAPAuthPlain, 500*time.Millisecond
		err := waitWithin(t, 10*time.Second, func() error {
			s, err := m.Stage(context.Background(), strings.NewReader("Subject: x\n\nhi\n"), Envelope{})
			if err == nil {
				s.Abort()
			}
			return err
		})
		var de *Error
		if !errors.As(err, &de) || !de.Temporary {
			t.Errorf("%s: Stage: %v, want a temporary failure", answer, err)
		}
		m.Close()
	}
}

// TestIMAPSettleEmptyMessage: the pending record of an empty message (a
// POP3 message of no octets) is settled like any other, not taken for a
// damaged record that would stop every poll: found when it is there,
// missing when it is not.
func TestIMAPSettleEmptyMessage(t *testing.T) {
	for _, there := range []bool{true, false} {
		msgs := []string{"Subject: x\r\n\r\ny\r\n"}
		if there {
			msgs = append(msgs, "")
		}
		m := hostileIMAP(t, settleServer(1, msgs))
		found, err := m.Settle(context.Background(), []Ref{imapRef(m, "", 1, 1)})
		if err != nil || found[0] != there {
			t.Errorf("in the folder: %v; Settle = %v, %v", there, found, err)
		}
		m.Close()
	}
}
