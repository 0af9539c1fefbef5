package fetch

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// The quirks suite: one pop3test mode per documented behaviour of real
// servers (see pop3test.Quirks and docs/interop.md). Each test runs whole
// polls and checks that nothing is lost or delivered twice, or that the
// poll fails with the kind of error (and so the exit code) that says what
// to do.

// logBuffer is a slog destination tests can read while polls write.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// quirkPoll polls with a log at debug level and the given memo.
func (f *fixture) quirkPoll(log *logBuffer, memo *Memo) (Stats, error) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := &Options{Memo: memo}
	if log != nil {
		opts.Log = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return Poll(ctx, f.acct, f.store, f.md, opts)
}

// TestQuirkLoginDiscardsInput: a server whose login hands the connection
// to another process drops whatever was sent behind the login command. It
// advertises PIPELINING (and honours it after login). Every way to log in
// must wait for the login's reply before the next command, and the whole
// mailbox must arrive, pipelined after login.
func TestQuirkLoginDiscardsInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  pop3test.Config
		auth AuthMode
	}{
		{"USER/PASS", pop3test.Config{}, AuthUser},
		{"APOP", pop3test.Config{APOP: true}, AuthAuto},
		{"AUTH PLAIN", pop3test.Config{SASL: []string{"PLAIN"}}, AuthPlain},
		{"AUTH SCRAM-SHA-256", pop3test.Config{SASL: []string{"SCRAM-SHA-256"}}, AuthAuto},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := testMessages(40)
			cfg := tc.cfg
			cfg.Pipelining = true
			cfg.Quirks.DiscardAfterLogin = true
			f := newFixture(t, cfg, msgs)
			f.acct.Auth = tc.auth
			st, err := f.quirkPoll(nil, nil)
			if err != nil || st.Delivered != 40 || st.Deleted != 40 {
				t.Fatalf("%+v, %v", st, err)
			}
			f.assertDelivered(msgs)
			if n := f.srv.Discarded(); n != 0 {
				t.Errorf("%d octets were sent behind the login and lost", n)
			}
			if f.srv.Deepest() < 10 {
				t.Errorf("at most %d commands in one flight: the transfer after login was not pipelined", f.srv.Deepest())
			}
			if got := f.srv.Messages(); len(got) != 0 {
				t.Errorf("%d messages left on the server", len(got))
			}
		})
	}
}

// TestQuirkAPOPWithoutSecret: the greeting carries an APOP timestamp, but
// the server has no APOP secret for the user. auth = "auto" tries APOP,
// then logs in with USER/PASS, says so at info level, and (with a Memo,
// as in the daemon) does not try APOP again. A wrong password ends with
// an authentication failure after one round: one APOP, one PASS.
func TestQuirkAPOPWithoutSecret(t *testing.T) {
	msgs := testMessages(5)
	f := newFixture(t, pop3test.Config{Pipelining: true, Quirks: pop3test.Quirks{APOPNoSecret: true}}, msgs)
	f.acct.Keep = true
	var log logBuffer
	memo := &Memo{}
	st, err := f.quirkPoll(&log, memo)
	if err != nil || st.Delivered != 5 || st.Auth != AuthUser {
		t.Fatalf("%+v, %v", st, err)
	}
	f.assertDelivered(msgs)
	if f.srv.Count("APOP") != 1 || f.srv.Count("PASS") != 1 {
		t.Errorf("APOP sent %d times, PASS %d", f.srv.Count("APOP"), f.srv.Count("PASS"))
	}
	if !strings.Contains(log.String(), "level=INFO") || !strings.Contains(log.String(), `logged in with USER after the server refused APOP; set auth = \"user\"`) {
		t.Errorf("no info line naming the method that worked:\n%s", log.String())
	}

	// The next poll of the daemon goes straight to USER/PASS.
	if st, err := f.quirkPoll(nil, memo); err != nil || st.New != 0 {
		t.Fatalf("%+v, %v", st, err)
	}
	if f.srv.Count("APOP") != 1 {
		t.Errorf("APOP tried again although the memo knows USER works")
	}
	// A one-shot run (no memo) tries APOP first again, and gets in.
	if _, err := f.quirkPoll(nil, nil); err != nil {
		t.Fatal(err)
	}

	// A wrong password: one round (APOP, then PASS), exit 3's kind.
	apop, pass := f.srv.Count("APOP"), f.srv.Count("PASS")
	f.acct.Password = func(context.Context) (string, error) { return "wrong", nil }
	_, err = f.quirkPoll(nil, nil)
	if kindOf(err) != KindAuth || !strings.Contains(err.Error(), "tried APOP, USER") {
		t.Fatalf("wrong password: %v", err)
	}
	if f.srv.Count("APOP")-apop != 1 || f.srv.Count("PASS")-pass != 1 {
		t.Errorf("a wrong password took %d APOP and %d PASS", f.srv.Count("APOP")-apop, f.srv.Count("PASS")-pass)
	}
}

// TestQuirkAuthFallbackOrder: what auto tries, in which order, on a
// connection that may carry a password (allow_insecure_auth), when the
// server refuses every challenge-response method: one of each family,
// strongest first, and the password last.
func TestQuirkAuthFallbackOrder(t *testing.T) {
	f := newFixture(t, pop3test.Config{APOP: true, SASL: []string{"SCRAM-SHA-1", "SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"}}, testMessages(1))
	var order []string
	f.srv.SetFaults(
		pop3test.Fault{Command: "AUTH", Action: pop3test.Reply, Reply: "-ERR [AUTH] no such credentials"},
		pop3test.Fault{Command: "APOP", Action: pop3test.Reply, Reply: "-ERR authentication failed"},
	)
	st, err := f.quirkPoll(nil, nil)
	if err != nil || st.Delivered != 1 || st.Auth != AuthUser {
		t.Fatalf("%+v, %v", st, err)
	}
	for _, c := range f.srv.Commands() {
		verb, arg, _ := strings.Cut(c, " ")
		switch verb {
		case "AUTH":
			mech, _, _ := strings.Cut(arg, " ")
			order = append(order, mech)
		case "APOP", "PASS":
			order = append(order, verb)
		}
	}
	if got, want := strings.Join(order, " "), "SCRAM-SHA-256 CRAM-MD5 APOP PASS"; got != want {
		t.Errorf("tried %s, want %s", got, want)
	}
}

// TestQuirkAuthNoFallback: refusals that are not about the credentials
// end the login at once; auto does not try another method.
func TestQuirkAuthNoFallback(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply string
		kind  Kind
	}{
		{"in use", "-ERR [IN-USE] mailbox busy", KindLocked},
		{"locked in words", "-ERR your mailbox is locked by another session", KindLocked},
		{"system", "-ERR [SYS/TEMP] try later", KindServer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, pop3test.Config{APOP: true}, testMessages(1))
			f.srv.SetFaults(pop3test.Fault{Command: "APOP", Action: pop3test.Reply, Reply: tc.reply})
			_, err := f.quirkPoll(nil, nil)
			if kindOf(err) != tc.kind {
				t.Fatalf("got %v (kind %v), want kind %v", err, kindOf(err), tc.kind)
			}
			if n := f.srv.Count("PASS"); n != 0 {
				t.Errorf("fell back to PASS after %q", tc.reply)
			}
		})
	}
	// A SCRAM server that cannot prove it knows the password may be an
	// impostor: no fallback to sending the password.
	f := newFixture(t, pop3test.Config{SASL: []string{"SCRAM-SHA-256"}, ForgeSCRAM: true}, testMessages(1))
	if _, err := f.quirkPoll(nil, nil); kindOf(err) != KindAuth {
		t.Fatalf("forged SCRAM: %v", err)
	}
	if f.srv.Count("PASS") != 0 || f.srv.Count("USER") != 0 {
		t.Errorf("sent the password after a SCRAM server failed to prove itself")
	}
}

// TestQuirkNoCapa: an RFC 1939 server without CAPA: nothing pipelined,
// UIDL asked for (and used: keep mode works), USER/PASS.
func TestQuirkNoCapa(t *testing.T) {
	msgs := testMessages(6)
	f := newFixture(t, pop3test.Config{NoCapa: true, APOP: true}, msgs)
	f.acct.Keep = true
	st, err := f.quirkPoll(nil, nil)
	if err != nil || st.Delivered != 6 {
		t.Fatalf("%+v, %v", st, err)
	}
	f.assertDelivered(msgs)
	if f.srv.Deepest() != 1 {
		t.Errorf("pipelined %d commands to a server without CAPA", f.srv.Deepest())
	}
	if f.srv.Count("UIDL") == 0 {
		t.Errorf("UIDL was not probed")
	}
	if st, err := f.quirkPoll(nil, nil); err != nil || st.New != 0 {
		t.Fatalf("second poll: %+v, %v", st, err)
	}
}

// TestQuirkNoUIDL: a server whose CAPA lacks UIDL (whether or not the
// command works), and one without CAPA and UIDL: keep mode is refused
// with a message that says why, delete mode delivers everything, and UIDL
// is never sent where CAPA says it is not there (some servers hang up).
func TestQuirkNoUIDL(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  pop3test.Config
	}{
		{"CAPA without UIDL", pop3test.Config{Pipelining: true, Quirks: pop3test.Quirks{HideUIDL: true, HangUpOnUnknown: true}}},
		{"no UIDL at all", pop3test.Config{NoUIDL: true, Quirks: pop3test.Quirks{HangUpOnUnknown: true}}},
		{"no CAPA, no UIDL", pop3test.Config{NoCapa: true, NoUIDL: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := testMessages(4)
			f := newFixture(t, tc.cfg, msgs)
			f.acct.Keep = true
			_, err := f.quirkPoll(nil, nil)
			if kindOf(err) != KindConfig || !strings.Contains(err.Error(), "does not support UIDL") || !strings.Contains(err.Error(), "keep = false") {
				t.Fatalf("keep mode: %v", err)
			}
			f.acct.Keep = false
			st, err := f.quirkPoll(nil, nil)
			if err != nil || st.Delivered != 4 || st.Deleted != 4 {
				t.Fatalf("delete mode: %+v, %v", st, err)
			}
			f.assertDelivered(msgs)
			if tc.cfg.NoCapa {
				return
			}
			if n := f.srv.Count("UIDL"); n != 0 {
				t.Errorf("UIDL sent %d times although CAPA lacks it", n)
			}
		})
	}
}

// TestQuirkListSizes: LIST sizes that differ from what RETR sends (GNU
// Mailutils). size_limit judges by LIST, and a message that turns out a
// little larger than listed is delivered whole, byte for byte.
func TestQuirkListSizes(t *testing.T) {
	msgs := testMessages(3)
	for i := range msgs {
		msgs[i].Data = append(msgs[i].Data, bytes.Repeat([]byte("some body text\n"), 60)...)
		msgs[i].ListSize = len(msgs[i].Data) - 40 // under-reported
	}
	big := pop3test.Message{UID: "big", Data: bytes.Repeat([]byte("x"), 5000), ListSize: 5000}
	f := newFixture(t, pop3test.Config{Pipelining: true, Quirks: pop3test.Quirks{XUIDL: true}}, append(msgs, big))
	f.acct.SizeLimit = int64(msgs[0].ListSize + 10) // between the listed and the real size
	st, err := f.quirkPoll(nil, nil)
	if err != nil || st.Delivered != 3 || st.Skipped != 1 {
		t.Fatalf("%+v, %v", st, err)
	}
	// What arrives is what the server sent: its X-UIDL field included.
	var want []pop3test.Message
	for _, m := range msgs {
		m.Data = append([]byte("X-UIDL: "+m.UID+"\n"), m.Data...)
		want = append(want, m)
	}
	f.assertDelivered(want)
	if got := f.srv.Messages(); len(got) != 1 || got[0].UID != "big" {
		t.Errorf("left on the server: %d messages", len(got))
	}
}

// TestQuirkXUIDLForged: a sender's own X-UIDL field (older clients took
// message identity from it) changes nothing: identity comes from UIDL.
func TestQuirkXUIDLForged(t *testing.T) {
	msgs := testMessages(3)
	msgs[2].Data = append([]byte("X-UIDL: uid-1\n"), msgs[2].Data...)
	f := newFixture(t, pop3test.Config{Pipelining: true, Quirks: pop3test.Quirks{XUIDL: true}}, msgs)
	f.acct.Keep = true
	if st, err := f.quirkPoll(nil, nil); err != nil || st.Delivered != 3 {
		t.Fatalf("%+v, %v", st, err)
	}
	f.srv.Add(pop3test.Message{UID: "uid-4", Data: []byte("X-UIDL: uid-2\nSubject: four\n\nbody\n")})
	st, err := f.quirkPoll(nil, nil)
	if err != nil || st.Delivered != 1 || st.New != 1 {
		t.Fatalf("%+v, %v", st, err)
	}
	if n := len(f.delivered()); n != 4 {
		t.Errorf("%d messages delivered, want 4", n)
	}
}

// TestQuirkExpireZero: a server that says EXPIRE 0 deletes what it sent
// whatever the client asks. With keep = true popfetch warns, once per
// memo (once a daemon's life per account), and loses nothing: the next
// poll finds the kept messages gone and forgets their UIDs.
func TestQuirkExpireZero(t *testing.T) {
	for _, tc := range []struct {
		name  string
		q     pop3test.Quirks
		flies int // flights of a no-new-mail poll
	}{
		{"EXPIRE 0", pop3test.Quirks{Expire: "0"}, 4},
		// Per user: CAPA again after login, in the flight of UIDL.
		{"EXPIRE 0 USER", pop3test.Quirks{Expire: "30 USER", ExpireAfterLogin: "0"}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := testMessages(3)
			f := newFixture(t, pop3test.Config{Pipelining: true, Quirks: tc.q}, msgs)
			f.acct.Keep = true
			var log logBuffer
			memo := &Memo{}
			if st, err := f.quirkPoll(&log, memo); err != nil || st.Delivered != 3 || st.Deleted != 0 {
				t.Fatalf("%+v, %v", st, err)
			}
			f.assertDelivered(msgs)
			if got := f.srv.Messages(); len(got) != 0 {
				t.Errorf("the server kept %d messages (EXPIRE 0)", len(got))
			}
			flights := f.srv.Flights()
			if st, err := f.quirkPoll(&log, memo); err != nil || st.Messages != 0 || st.Delivered != 0 {
				t.Fatalf("second poll: %+v, %v", st, err)
			}
			if n := f.srv.Flights() - flights; n != tc.flies {
				t.Errorf("a no-new-mail poll took %d flights, want %d", n, tc.flies)
			}
			if n := strings.Count(log.String(), "EXPIRE 0"); n != 1 {
				t.Errorf("warned %d times, want once:\n%s", n, log.String())
			}
			if !strings.Contains(log.String(), "level=WARN") {
				t.Errorf("not a warning:\n%s", log.String())
			}
			f.srv.Add(pop3test.Message{UID: "uid-9", Data: []byte("Subject: nine\n\nx\n")})
			if st, err := f.quirkPoll(&log, memo); err != nil || st.Delivered != 1 {
				t.Fatalf("third poll: %+v, %v", st, err)
			}
		})
	}
	// EXPIRE NEVER, or keep = false: no warning.
	f := newFixture(t, pop3test.Config{Quirks: pop3test.Quirks{Expire: "NEVER"}}, testMessages(1))
	f.acct.Keep = true
	var log logBuffer
	if _, err := f.quirkPoll(&log, nil); err != nil || strings.Contains(log.String(), "EXPIRE") {
		t.Fatalf("%v\n%s", err, log.String())
	}
}

// TestQuirkVanishRetrieved: a hosted service that hides retrieved
// messages from later sessions, DELE or not. Keep mode loses nothing and
// raises no error when kept mail disappears; new mail still arrives.
func TestQuirkVanishRetrieved(t *testing.T) {
	msgs := testMessages(4)
	f := newFixture(t, pop3test.Config{Pipelining: true, Quirks: pop3test.Quirks{VanishRetrieved: true}}, msgs)
	f.acct.Keep = true
	if st, err := f.quirkPoll(nil, nil); err != nil || st.Delivered != 4 {
		t.Fatalf("%+v, %v", st, err)
	}
	if st, err := f.quirkPoll(nil, nil); err != nil || st.Messages != 0 || st.Delivered != 0 {
		t.Fatalf("second poll: %+v, %v", st, err)
	}
	f.srv.Add(pop3test.Message{UID: "uid-5", Data: []byte("Subject: five\n\nx\n")})
	if st, err := f.quirkPoll(nil, nil); err != nil || st.Delivered != 1 {
		t.Fatalf("third poll: %+v, %v", st, err)
	}
	if n := len(f.delivered()); n != 5 {
		t.Errorf("%d delivered, want 5", n)
	}
	uids, err := f.store.Count(f.acct.Key())
	if err != nil || uids > 1 {
		t.Errorf("the store still holds %d UIDs of messages gone from the server", uids)
	}
}

// TestQuirkLockedWithoutCode: a server without RESP-CODES says the mailbox
// is locked in words. That is "mailbox locked" (exit 9, retried later),
// not a refused password, and auto does not go on to another method.
func TestQuirkLockedWithoutCode(t *testing.T) {
	f := newFixture(t, pop3test.Config{APOP: true, Quirks: pop3test.Quirks{LockedReply: "-ERR Unable to lock maildrop: mailbox in use"}}, testMessages(2))
	holder := f.srv.HoldLock()
	_, err := f.quirkPoll(nil, nil)
	if kindOf(err) != KindLocked {
		t.Fatalf("got %v, want mailbox locked", err)
	}
	var fe *Error
	if errors.As(err, &fe) && !fe.Temporary() {
		t.Errorf("a locked mailbox is not temporary")
	}
	if f.srv.Count("PASS") != 0 {
		t.Errorf("fell back to USER/PASS after the lock message")
	}
	holder()
	if st, err := f.quirkPoll(nil, nil); err != nil || st.Delivered != 2 {
		t.Fatalf("after the lock: %+v, %v", st, err)
	}
}

// TestQuirkGreetingWithoutTimestamp: no APOP timestamp in the greeting.
// auto logs in with USER/PASS; auth = "apop" says what is missing.
func TestQuirkGreetingWithoutTimestamp(t *testing.T) {
	f := newFixture(t, pop3test.Config{APOP: true, Greeting: "+OK POP3 ready"}, testMessages(2))
	if st, err := f.quirkPoll(nil, nil); err != nil || st.Auth != AuthUser || st.Delivered != 2 {
		t.Fatalf("%+v, %v", st, err)
	}
	f.srv.Add(testMessages(1)...)
	f.acct.Auth = AuthAPOP
	_, err := f.quirkPoll(nil, nil)
	if kindOf(err) != KindProtocol || !strings.Contains(err.Error(), "no valid APOP timestamp") {
		t.Fatalf("auth = apop: %v", err)
	}
	if f.srv.Count("APOP") != 0 {
		t.Errorf("APOP sent without a timestamp")
	}
}

// TestQuirkHangUpOnUnknown: a server that hangs up on a command it does
// not know. popfetch sends only what CAPA lists (no UTF8, no AUTH, no
// UIDL unless listed) and the poll succeeds, in keep and delete mode.
func TestQuirkHangUpOnUnknown(t *testing.T) {
	msgs := testMessages(5)
	f := newFixture(t, pop3test.Config{Pipelining: true, Quirks: pop3test.Quirks{HangUpOnUnknown: true}}, msgs)
	f.acct.Keep = true
	if st, err := f.quirkPoll(nil, nil); err != nil || st.Delivered != 5 {
		t.Fatalf("keep: %+v, %v", st, err)
	}
	f.acct.Keep = false
	if st, err := f.quirkPoll(nil, nil); err != nil || st.Deleted != 5 {
		t.Fatalf("delete: %+v, %v", st, err)
	}
	f.assertDelivered(msgs)
	for _, verb := range []string{"UTF8", "AUTH", "TOP", "STLS"} {
		if n := f.srv.Count(verb); n != 0 {
			t.Errorf("%s sent %d times", verb, n)
		}
	}
}

// TestQuirksWithDefaults: the Courier-style server (login in another
// process, PIPELINING advertised) and the APOP server without APOP
// secrets, each over POP3S and over STLS with every setting left at its
// default (auth auto, pipelining auto, no allow_insecure_auth): every
// message arrives byte for byte and leaves the server.
func TestQuirksWithDefaults(t *testing.T) {
	cert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		name string
		q    pop3test.Quirks
	}{
		{"login in another process", pop3test.Quirks{DiscardAfterLogin: true}},
		{"APOP without secrets", pop3test.Quirks{APOPNoSecret: true}},
		{"both", pop3test.Quirks{DiscardAfterLogin: true, APOPNoSecret: true}},
	} {
		for _, mode := range []TLSMode{TLSImplicit, TLSStartTLS} {
			t.Run(q.name+"/"+string(mode), func(t *testing.T) {
				cfg := pop3test.Config{Pipelining: true, SASL: []string{"PLAIN", "LOGIN"}, Quirks: q.q}
				if mode == TLSImplicit {
					cfg.TLS = cert.ServerConfig()
				} else {
					cfg.STLS = cert.ServerConfig()
				}
				msgs := testMessages(30)
				f := newFixture(t, cfg, msgs)
				f.acct.TLS, f.acct.AllowInsecureAuth, f.acct.Pipelining = mode, false, ""
				f.acct.TLSConfig = cert.ClientConfig("127.0.0.1")
				st, err := f.quirkPoll(nil, nil)
				if err != nil || st.Delivered != 30 || st.Deleted != 30 {
					t.Fatalf("%+v, %v", st, err)
				}
				f.assertDelivered(msgs)
				if f.srv.Discarded() != 0 || f.srv.Count("APOP") != 0 {
					t.Errorf("discarded %d octets, sent APOP %d times", f.srv.Discarded(), f.srv.Count("APOP"))
				}
			})
		}
	}
}

// TestQuirkHangUpAtCapa: an RFC 1939 server that hangs up at CAPA, a
// command it does not know. popfetch connects again, asks nothing it may
// not know, and fetches as from any server without capabilities. With
// tls = "starttls" that cannot work (STLS is known only from CAPA): a
// network error, and no credentials sent.
func TestQuirkHangUpAtCapa(t *testing.T) {
	msgs := testMessages(3)
	f := newFixture(t, pop3test.Config{NoCapa: true, Quirks: pop3test.Quirks{HangUpOnUnknown: true}}, msgs)
	st, err := f.quirkPoll(nil, nil)
	if err != nil || st.Delivered != 3 || st.Deleted != 3 {
		t.Fatalf("%+v, %v", st, err)
	}
	f.assertDelivered(msgs)
	if n := f.srv.Sessions(); n != 2 {
		t.Errorf("%d connections, want 2 (one hung up at CAPA)", n)
	}
	if n := f.srv.Count("CAPA"); n != 1 {
		t.Errorf("CAPA sent %d times", n)
	}

	cert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	f = newFixture(t, pop3test.Config{NoCapa: true, STLS: cert.ServerConfig(), Quirks: pop3test.Quirks{HangUpOnUnknown: true}}, msgs)
	f.acct.TLS, f.acct.TLSConfig = TLSStartTLS, cert.ClientConfig("127.0.0.1")
	if _, err := f.quirkPoll(nil, nil); kindOf(err) != KindNetwork {
		t.Fatalf("starttls: %v", err)
	}
	if f.srv.Count("USER")+f.srv.Count("PASS") != 0 || f.srv.Sessions() != 1 {
		t.Errorf("credentials sent, or connected again, without STLS")
	}
}

// TestQuirkListWithoutTop: popfetch list --headers on a server whose CAPA
// lacks TOP and that hangs up on unknown commands: the listing, without
// headers, and no TOP sent.
func TestQuirkListWithoutTop(t *testing.T) {
	f := newFixture(t, pop3test.Config{NoTop: true, Quirks: pop3test.Quirks{HangUpOnUnknown: true}}, testMessages(3))
	var log logBuffer
	opts := &Options{Log: slog.New(slog.NewTextHandler(&log, nil))}
	got, err := List(context.Background(), f.acct, f.store, true, opts)
	if err != nil || len(got) != 3 || got[0].Subject != "" {
		t.Fatalf("%+v, %v", got, err)
	}
	if f.srv.Count("TOP") != 0 || !strings.Contains(log.String(), "does not offer TOP") {
		t.Errorf("TOP sent %d times; log:\n%s", f.srv.Count("TOP"), log.String())
	}
}

// TestQuirkHangUpAfterRefusedLogin: a server that hangs up after every
// refused login, with APOP offered and no APOP secret. auto connects
// again and logs in with USER/PASS; a wrong password still ends as an
// authentication failure naming what was tried, not a network error.
func TestQuirkHangUpAfterRefusedLogin(t *testing.T) {
	msgs := testMessages(3)
	f := newFixture(t, pop3test.Config{Pipelining: true, Quirks: pop3test.Quirks{APOPNoSecret: true, HangUpAfterFailedLogin: true}}, msgs)
	st, err := f.quirkPoll(nil, nil)
	if err != nil || st.Delivered != 3 || st.Auth != AuthUser {
		t.Fatalf("%+v, %v", st, err)
	}
	f.assertDelivered(msgs)
	if n := f.srv.Sessions(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
	f.acct.Password = func(context.Context) (string, error) { return "wrong", nil }
	_, err = f.quirkPoll(nil, nil)
	if kindOf(err) != KindAuth || !strings.Contains(err.Error(), "tried APOP, USER") {
		t.Fatalf("wrong password: %v", err)
	}
}

// TestMentionsLock: what counts as a locked mailbox said in words.
func TestMentionsLock(t *testing.T) {
	for _, tc := range []struct {
		text string
		lock bool
	}{
		{"Unable to lock maildrop", true},
		{"Unable to lock maildrop: mailbox in use", true},
		{"your mailbox is locked by another session", true},
		{"Mailbox busy, try again later", true},
		{"maildrop already in use", true},
		{"Invalid password; the account is locked after 3 failures", false},
		{"Blocked: too many failures", false},
		{"Account locked out", false},
		{"mailbox locked: too many login attempts", false},
		{"Authentication failed", false},
		{"server busy", false}, // nothing about the mailbox
	} {
		if got := mentionsLock(tc.text); got != tc.lock {
			t.Errorf("mentionsLock(%q) = %v, want %v", tc.text, got, tc.lock)
		}
	}
}

// TestQuirkCapaResetAfterItWorked: once a server has answered CAPA (the
// daemon's Memo knows), a hang-up at CAPA is a broken connection, not a
// server without CAPA: no reconnect without capabilities, so no login
// weaker than the one CAPA offered (SCRAM here). A named SASL mechanism
// after a hang-up is a network error, not a configuration error.
func TestQuirkCapaResetAfterItWorked(t *testing.T) {
	f := newFixture(t, pop3test.Config{SASL: []string{"SCRAM-SHA-256"}}, testMessages(2))
	f.acct.Keep = true
	memo := &Memo{}
	if _, err := f.quirkPoll(nil, memo); err != nil {
		t.Fatal(err)
	}
	f.srv.SetFaults(pop3test.Fault{Command: "CAPA", Nth: 2, Action: pop3test.Drop})
	if _, err := f.quirkPoll(nil, memo); kindOf(err) != KindNetwork {
		t.Fatalf("reset at CAPA: %v, want a network error", err)
	}
	if n := f.srv.Count("PASS"); n != 0 {
		t.Errorf("the password went by PASS %d times instead of SCRAM", n)
	}
	f.srv.SetFaults(pop3test.Fault{Command: "CAPA", Nth: 3, Action: pop3test.Drop})
	f.acct.Auth = AuthSCRAMSHA256
	if _, err := f.quirkPoll(nil, nil); kindOf(err) != KindNetwork || !strings.Contains(err.Error(), "hung up when asked for its capabilities") {
		t.Fatalf("named mechanism after a reset: %v", err)
	}
}

// TestQuirkListHangUpAtTop: popfetch list --headers on a server without
// CAPA that hangs up at TOP: the listing is shown, without headers.
func TestQuirkListHangUpAtTop(t *testing.T) {
	f := newFixture(t, pop3test.Config{NoCapa: true, NoTop: true, Quirks: pop3test.Quirks{HangUpOnUnknown: true}}, testMessages(3))
	var log logBuffer
	got, err := List(context.Background(), f.acct, f.store, true, &Options{Log: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil || len(got) != 3 || got[0].UID != "uid-1" {
		t.Fatalf("%+v, %v", got, err)
	}
	if !strings.Contains(log.String(), "hung up at TOP") {
		t.Errorf("log:\n%s", log.String())
	}
}

// TestUnknownAuthMode: a mode fetch does not know is a configuration
// error, never taken for a SASL name (upper-cased) or for USER/PASS.
func TestUnknownAuthMode(t *testing.T) {
	f := newFixture(t, pop3test.Config{SASL: []string{"DIGEST-MD5"}}, testMessages(1))
	f.acct.Auth = "digest-md5"
	if _, err := f.quirkPoll(nil, nil); kindOf(err) != KindConfig {
		t.Fatalf("got %v, want a configuration error", err)
	}
	if n := f.srv.Count("AUTH") + f.srv.Count("PASS"); n != 0 {
		t.Errorf("%d logins attempted", n)
	}
}

// TestLoginDelayCapped: a LOGIN-DELAY past 24 hours, or one that does not
// fit a duration, counts as 24 hours.
func TestLoginDelayCapped(t *testing.T) {
	for _, v := range []string{"9223372036", "99999999999999999999", "86401"} {
		f := newFixture(t, pop3test.Config{Greeting: "+OK hi"}, testMessages(1))
		f.srv.SetFaults(pop3test.Fault{Command: "CAPA", Action: pop3test.Reply, Reply: "+OK\r\nUIDL\r\nUSER\r\nLOGIN-DELAY " + v + "\r\n."})
		st, err := f.poll()
		if err != nil || (v != "99999999999999999999" && st.LoginDelay != 24*time.Hour) {
			t.Errorf("LOGIN-DELAY %s: %v, %v", v, st.LoginDelay, err)
		}
	}
}
