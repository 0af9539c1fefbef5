package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
	"github.com/popfetch/popfetch/uidstore"
)

// testMessages makes n messages; message i has UID "uid-i" and a body that
// exercises dot-stuffing.
func testMessages(n int) []pop3test.Message {
	var out []pop3test.Message
	for i := 1; i <= n; i++ {
		out = append(out, pop3test.Message{
			UID:  fmt.Sprintf("uid-%d", i),
			Data: []byte(fmt.Sprintf("From: a@example.com\nSubject: message %d\n\nline one\n.leading dot\n..\nend %d\n", i, i)),
		})
	}
	return out
}

type fixture struct {
	t     *testing.T
	srv   *pop3test.Server
	acct  *Account
	store *uidstore.Store
	dir   string
	md    *deliver.Maildir
}

func newFixture(t *testing.T, cfg pop3test.Config, msgs []pop3test.Message) *fixture {
	t.Helper()
	cfg.User, cfg.Password = "alice", "wonderland"
	srv, err := pop3test.NewServer(cfg, msgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	host, port := splitAddr(t, srv.Addr())
	store, err := uidstore.Open(filepath.Join(t.TempDir(), "uids.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	dir := filepath.Join(t.TempDir(), "Maildir")
	md, err := deliver.NewMaildir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{
		t: t, srv: srv, store: store, dir: dir, md: md,
		acct: &Account{
			Name: "test", Server: host, Port: port, TLS: TLSNone, AllowInsecureAuth: true,
			User: "alice", Password: func(context.Context) (string, error) { return "wonderland", nil },
			Auth: AuthAuto, Timeout: 5 * time.Second, AddReceived: true, Recipient: "alice",
		},
	}
}

func splitAddr(t *testing.T, addr string) (string, int) {
	var port int
	i := strings.LastIndexByte(addr, ':')
	fmt.Sscan(addr[i+1:], &port)
	return addr[:i], port
}

func (f *fixture) poll() (Stats, error) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return Poll(ctx, f.acct, f.store, f.md, nil)
}

// delivered returns the bodies in the Maildir's new/, Received field removed, sorted.
func (f *fixture) delivered() []string {
	f.t.Helper()
	entries, err := os.ReadDir(filepath.Join(f.dir, "new"))
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(f.dir, "new", e.Name()))
		if err != nil {
			f.t.Fatal(err)
		}
		out = append(out, stripReceived(string(data)))
	}
	if tmp, _ := os.ReadDir(filepath.Join(f.dir, "tmp")); len(tmp) != 0 {
		f.t.Errorf("files left in tmp/: %d", len(tmp))
	}
	sort.Strings(out)
	return out
}

func stripReceived(msg string) string {
	if !strings.HasPrefix(msg, "Received: ") {
		return msg
	}
	lines := strings.SplitAfter(msg, "\n")
	i := 1
	for i < len(lines) && strings.HasPrefix(lines[i], "\t") {
		i++
	}
	return strings.Join(lines[i:], "")
}

func wantBodies(msgs []pop3test.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, string(m.Data))
	}
	sort.Strings(out)
	return out
}

func (f *fixture) assertDelivered(want []pop3test.Message) {
	f.t.Helper()
	got, w := f.delivered(), wantBodies(want)
	if strings.Join(got, "\x00") != strings.Join(w, "\x00") {
		f.t.Fatalf("Maildir holds %d messages, want %d:\n%q\nwant\n%q", len(got), len(w), got, w)
	}
}

func TestPollDeleteMode(t *testing.T) {
	msgs := testMessages(5)
	f := newFixture(t, pop3test.Config{}, msgs)
	st, err := f.poll()
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 5 || st.New != 5 || st.Delivered != 5 || st.Deleted != 5 || st.Bytes == 0 {
		t.Errorf("stats %+v", st)
	}
	f.assertDelivered(msgs)
	if n := len(f.srv.Messages()); n != 0 {
		t.Errorf("%d messages left on the server", n)
	}
	// The next poll finds nothing, and prunes the store.
	st, err = f.poll()
	if err != nil || st.Messages != 0 || st.Delivered != 0 {
		t.Fatalf("second poll: %+v, %v", st, err)
	}
	if n, _ := f.store.Count(f.acct.Key()); n != 0 {
		t.Errorf("%d UIDs left in the store after the server emptied", n)
	}
}

func TestPollKeepMode(t *testing.T) {
	msgs := testMessages(4)
	f := newFixture(t, pop3test.Config{}, msgs)
	f.acct.Keep = true
	st, err := f.poll()
	if err != nil || st.Delivered != 4 || st.Deleted != 0 {
		t.Fatalf("first poll: %+v, %v", st, err)
	}
	st, err = f.poll()
	if err != nil || st.New != 0 || st.Delivered != 0 {
		t.Fatalf("second poll: %+v, %v", st, err)
	}
	if f.srv.Count("RETR") != 4 || f.srv.Count("DELE") != 0 {
		t.Errorf("RETR %d DELE %d", f.srv.Count("RETR"), f.srv.Count("DELE"))
	}
	// New mail arrives: only it is fetched.
	extra := pop3test.Message{UID: "late", Data: []byte("Subject: late\n\nx\n")}
	f.srv.Add(extra)
	st, err = f.poll()
	if err != nil || st.New != 1 || st.Delivered != 1 {
		t.Fatalf("third poll: %+v, %v", st, err)
	}
	f.assertDelivered(append(msgs, extra))
	if n := len(f.srv.Messages()); n != 5 {
		t.Errorf("%d messages on the server, want 5", n)
	}
}

func TestPollSizeLimit(t *testing.T) {
	msgs := testMessages(3)
	msgs[1].Data = append([]byte("Subject: big\n\n"), bytes.Repeat([]byte("x"), 10000)...)
	f := newFixture(t, pop3test.Config{}, msgs)
	f.acct.SizeLimit = 5000
	st, err := f.poll()
	if err != nil || st.Delivered != 2 || st.Skipped != 1 || st.Deleted != 2 {
		t.Fatalf("%+v, %v", st, err)
	}
	if left := f.srv.Messages(); len(left) != 1 || left[0].UID != "uid-2" {
		t.Errorf("server holds %v", left)
	}
	f.assertDelivered([]pop3test.Message{msgs[0], msgs[2]})
}

func TestPollFetchLimit(t *testing.T) {
	msgs := testMessages(5)
	f := newFixture(t, pop3test.Config{}, msgs)
	f.acct.FetchLimit = 2
	for i, want := range []int{2, 2, 1} {
		st, err := f.poll()
		if err != nil || st.Delivered != want || st.LimitReached != (want == 2) {
			t.Fatalf("poll %d: %+v, %v", i+1, st, err)
		}
	}
	f.assertDelivered(msgs)
}

func TestPollConnectionDroppedMidRetr(t *testing.T) {
	msgs := testMessages(4)
	f := newFixture(t, pop3test.Config{}, msgs)
	// Cut the third RETR 30 bytes into its reply.
	f.srv.SetFaults(pop3test.Fault{Command: "RETR", Nth: 3, Action: pop3test.DropAfter, Bytes: 30})
	st, err := f.poll()
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindNetwork || !fe.Temporary() {
		t.Fatalf("got %v, want a temporary network error", err)
	}
	if st.Delivered != 2 || st.Deleted != 0 {
		t.Errorf("stats %+v", st)
	}
	// Nothing was deleted (no QUIT), the partial message was not published.
	if n := len(f.srv.Messages()); n != 4 {
		t.Fatalf("server holds %d messages, want 4", n)
	}
	f.assertDelivered(msgs[:2])
	// The next poll deletes the two delivered ones without downloading
	// them again, and fetches the rest.
	retrBefore := f.srv.Count("RETR")
	st, err = f.poll()
	if err != nil || st.Delivered != 2 || st.Deleted != 4 {
		t.Fatalf("rerun: %+v, %v", st, err)
	}
	if n := f.srv.Count("RETR") - retrBefore; n != 2 {
		t.Errorf("rerun sent %d RETR, want 2", n)
	}
	f.assertDelivered(msgs)
	if n := len(f.srv.Messages()); n != 0 {
		t.Errorf("server holds %d messages", n)
	}
}

func TestPollDroppedBeforeQuitReply(t *testing.T) {
	msgs := testMessages(2)
	f := newFixture(t, pop3test.Config{}, msgs)
	f.srv.SetFaults(pop3test.Fault{Command: "QUIT", Nth: 1, Action: pop3test.Drop})
	if _, err := f.poll(); err == nil {
		t.Fatal("no error when QUIT got no reply")
	}
	f.srv.SetFaults()
	st, err := f.poll()
	if err != nil || st.Delivered != 0 || st.Deleted != 2 {
		t.Fatalf("rerun: %+v, %v", st, err)
	}
	f.assertDelivered(msgs)
}

func TestPollMDATempFail(t *testing.T) {
	msgs := testMessages(2)
	f := newFixture(t, pop3test.Config{}, msgs)
	dir := t.TempDir()
	script := filepath.Join(dir, "mda")
	flag := filepath.Join(dir, "fail")
	out := filepath.Join(dir, "out")
	os.WriteFile(flag, nil, 0o600)
	os.WriteFile(script, []byte(fmt.Sprintf("#!/bin/sh\nif [ -e %s ]; then cat >/dev/null; exit 75; fi\ncat >> %s\n", flag, out)), 0o755)
	mda := &deliver.MDA{Argv: []string{script}, Timeout: 10 * time.Second}
	ctx := context.Background()

	st, err := Poll(ctx, f.acct, f.store, mda, nil)
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindDelivery || !fe.Temporary() {
		t.Fatalf("got %v, want a temporary delivery error", err)
	}
	if st.Failed != 2 || st.Delivered != 0 || st.Deleted != 0 {
		t.Errorf("stats %+v", st)
	}
	if n := len(f.srv.Messages()); n != 2 {
		t.Fatalf("server holds %d messages, want 2", n)
	}
	os.Remove(flag)
	st, err = Poll(ctx, f.acct, f.store, mda, nil)
	if err != nil || st.Delivered != 2 || st.Deleted != 2 {
		t.Fatalf("retry: %+v, %v", st, err)
	}
	data, _ := os.ReadFile(out)
	if c := strings.Count(string(data), "Subject: message"); c != 2 {
		t.Errorf("MDA received %d messages, want 2", c)
	}
}

func TestPollGivesUpAfterRepeatedDeliveryFailures(t *testing.T) {
	f := newFixture(t, pop3test.Config{}, testMessages(100))
	mda := &deliver.MDA{Argv: []string{"false"}}
	tune := tuning{window: 1, syncers: 1, queue: 1, batch: 10, batchWait: 10 * time.Millisecond}
	_, err := Poll(context.Background(), f.acct, f.store, mda, &Options{tune: &tune})
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindDelivery {
		t.Fatalf("got %v", err)
	}
	// Publishing runs behind reading: besides the failed ones, at most what
	// the queue, the sequencer's batch and the window hold is downloaded.
	limit := maxConsecutiveFailures + max(tune.queue, tune.batch) + tune.batch + tune.window + 1
	if n := f.srv.Count("RETR"); n > limit {
		t.Errorf("downloaded %d messages for a broken target, want at most %d", n, limit)
	}
	if n := len(f.srv.Messages()); n != 100 {
		t.Errorf("server holds %d messages", n)
	}
}

func TestPollSTLS(t *testing.T) {
	cert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     pop3test.Config
		faults  []pop3test.Fault
		tlsCfg  func(*Account)
		kind    Kind
		success bool
	}{
		{"works", pop3test.Config{STLS: cert.ServerConfig()}, nil, nil, 0, true},
		{"missing from CAPA", pop3test.Config{}, nil, nil, KindProtocol, false},
		{"refused", pop3test.Config{STLS: cert.ServerConfig()}, []pop3test.Fault{{Command: "STLS", Action: pop3test.Reply, Reply: "-ERR TLS not available now"}}, nil, KindProtocol, false},
		{"injected plaintext", pop3test.Config{STLS: cert.ServerConfig(), STLSInject: "+OK injected\r\n"}, nil, nil, KindProtocol, false},
		{"untrusted certificate", pop3test.Config{STLS: cert.ServerConfig()}, nil, func(a *Account) { a.TLSConfig = nil }, KindTLS, false},
		{"stalls in the handshake", pop3test.Config{STLS: cert.ServerConfig()}, []pop3test.Fault{{Command: "STLS", Action: pop3test.Mute, Reply: "+OK go ahead"}}, func(a *Account) { a.Timeout = 300 * time.Millisecond }, KindNetwork, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.cfg, testMessages(1))
			f.srv.SetFaults(tt.faults...)
			f.acct.TLS = TLSStartTLS
			f.acct.AllowInsecureAuth = false
			f.acct.TLSConfig = cert.ClientConfig("127.0.0.1")
			if tt.tlsCfg != nil {
				tt.tlsCfg(f.acct)
			}
			st, err := f.poll()
			if tt.success {
				if err != nil || st.Delivered != 1 {
					t.Fatalf("%+v, %v", st, err)
				}
				return
			}
			var fe *Error
			if !errors.As(err, &fe) || fe.Kind != tt.kind {
				t.Fatalf("got %v, want kind %v", err, tt.kind)
			}
			for _, c := range f.srv.Commands() {
				if strings.HasPrefix(c, "PASS") || strings.HasPrefix(c, "USER") || strings.HasPrefix(c, "APOP") {
					t.Errorf("credentials sent: %q", c)
				}
			}
		})
	}
}

func TestPollImplicitTLS(t *testing.T) {
	cert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, pop3test.Config{TLS: cert.ServerConfig()}, testMessages(2))
	f.acct.TLS = TLSImplicit
	f.acct.AllowInsecureAuth = false
	f.acct.TLSConfig = cert.ClientConfig("127.0.0.1")
	if st, err := f.poll(); err != nil || st.Delivered != 2 {
		t.Fatalf("%+v, %v", st, err)
	}
	if got := f.delivered(); len(got) != 2 {
		t.Fatalf("delivered %d", len(got))
	}
	entries, _ := os.ReadDir(filepath.Join(f.dir, "new"))
	raw, _ := os.ReadFile(filepath.Join(f.dir, "new", entries[0].Name()))
	if !strings.HasPrefix(string(raw), "Received: from 127.0.0.1 (127.0.0.1)\n\tby ") || !strings.Contains(string(raw), " with POP3S id uid-") {
		t.Errorf("Received field: %q", raw[:120])
	}
}

// A POP3S server that accepts the connection and never answers the
// ClientHello (CVE-2011-1947's hang, on port 995): the poll ends with a
// network error after the account's timeout, not days later.
func TestPollImplicitTLSHandshakeStalls(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			held <- c // read nothing, write nothing
		}
	}()
	f := newFixture(t, pop3test.Config{}, nil)
	f.acct.Server, f.acct.Port = splitAddr(t, l.Addr().String())
	f.acct.TLS = TLSImplicit
	f.acct.AllowInsecureAuth = false
	f.acct.Timeout = 300 * time.Millisecond
	start := time.Now()
	_, err = f.poll()
	if k := kindOf(err); k != KindNetwork || time.Since(start) > 5*time.Second {
		t.Fatalf("after %v: kind %v: %v", time.Since(start), k, err)
	}
	if !strings.Contains(err.Error(), "TLS") {
		t.Errorf("the error does not say it was the TLS handshake: %v", err)
	}
	select {
	case c := <-held:
		c.Close()
	default:
	}
}

func TestPollPlaintextRefusedWithoutOptIn(t *testing.T) {
	f := newFixture(t, pop3test.Config{}, testMessages(1))
	f.acct.AllowInsecureAuth = false
	_, err := f.poll()
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindConfig {
		t.Fatalf("got %v", err)
	}
	for _, c := range f.srv.Commands() {
		if strings.HasPrefix(c, "PASS") {
			t.Errorf("password sent in the clear: %q", c)
		}
	}
}

func TestPollErrors(t *testing.T) {
	tests := []struct {
		name      string
		cfg       pop3test.Config
		faults    []pop3test.Fault
		setup     func(*fixture)
		kind      Kind
		temporary bool
	}{
		{"wrong password", pop3test.Config{}, nil, func(f *fixture) {
			f.acct.Password = func(context.Context) (string, error) { return "wrong", nil }
		}, KindAuth, false},
		{"mailbox in use", pop3test.Config{}, []pop3test.Fault{{Command: "PASS", Action: pop3test.Reply, Reply: "-ERR [IN-USE] locked"}}, nil, KindLocked, true},
		{"lock without code", pop3test.Config{}, []pop3test.Fault{{Command: "PASS", Action: pop3test.Reply, Reply: "-ERR mailbox is locked"}}, nil, KindLocked, true},
		{"login delay", pop3test.Config{}, []pop3test.Fault{{Command: "PASS", Action: pop3test.Reply, Reply: "-ERR [LOGIN-DELAY] wait"}}, nil, KindServer, true},
		{"greeting refused", pop3test.Config{}, []pop3test.Fault{{Command: "GREETING", Action: pop3test.Reply, Reply: "-ERR [SYS/TEMP] busy"}}, nil, KindServer, true},
		{"garbage", pop3test.Config{}, []pop3test.Fault{{Command: "UIDL", Action: pop3test.Garbage}}, nil, KindProtocol, false},
		{"LIST refused", pop3test.Config{NoUIDL: true}, []pop3test.Fault{{Command: "LIST", Action: pop3test.Reply, Reply: "-ERR [SYS/PERM] broken"}}, nil, KindServer, false},
		{"LIST refused with size_limit", pop3test.Config{}, []pop3test.Fault{{Command: "LIST", Action: pop3test.Reply, Reply: "-ERR [SYS/PERM] broken"}}, func(f *fixture) { f.acct.SizeLimit = 1 << 20 }, KindServer, false},
		{"connection refused", pop3test.Config{}, nil, func(f *fixture) { f.acct.Port = 1 }, KindNetwork, true},
		{"server stalls", pop3test.Config{}, []pop3test.Fault{{Command: "UIDL", Action: pop3test.Stall, Delay: 10 * time.Second}}, func(f *fixture) {
			f.acct.Timeout = 200 * time.Millisecond
		}, KindNetwork, true},
		{"password command fails", pop3test.Config{}, nil, func(f *fixture) {
			f.acct.Password = func(context.Context) (string, error) { return "", errors.New("gpg: decryption failed") }
		}, KindConfig, false},
		{"UIDL advertised but refused", pop3test.Config{}, []pop3test.Fault{{Command: "UIDL", Action: pop3test.Reply, Reply: "-ERR index broken"}}, nil, KindServer, false},
		{"keep without UIDL", pop3test.Config{NoUIDL: true}, nil, func(f *fixture) { f.acct.Keep = true }, KindConfig, false},
		{"duplicate UIDs", pop3test.Config{}, nil, func(f *fixture) {
			f.srv.Add(pop3test.Message{UID: "uid-1", Data: []byte("Subject: twin\n\nx\n")})
		}, KindProtocol, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.cfg, testMessages(2))
			f.srv.SetFaults(tt.faults...)
			if tt.setup != nil {
				tt.setup(f)
			}
			before := len(f.srv.Messages())
			_, err := f.poll()
			var fe *Error
			if !errors.As(err, &fe) || fe.Kind != tt.kind {
				t.Fatalf("got %v (kind %v), want kind %v", err, kindOf(err), tt.kind)
			}
			if fe.Temporary() != tt.temporary {
				t.Errorf("Temporary() = %v", fe.Temporary())
			}
			if n := len(f.srv.Messages()); n != before {
				t.Errorf("server lost messages: %d -> %d", before, n)
			}
			if len(f.delivered()) != 0 {
				t.Errorf("messages delivered despite the failure")
			}
		})
	}
}

func kindOf(err error) Kind {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Kind
	}
	return -1
}

func TestPollWithoutUIDL(t *testing.T) {
	msgs := testMessages(3)
	f := newFixture(t, pop3test.Config{NoUIDL: true}, msgs)
	st, err := f.poll()
	if err != nil || st.Delivered != 3 || st.Deleted != 3 {
		t.Fatalf("%+v, %v", st, err)
	}
	f.assertDelivered(msgs)
}

func TestPollAPOPAuto(t *testing.T) {
	f := newFixture(t, pop3test.Config{APOP: true}, testMessages(1))
	if st, err := f.poll(); err != nil || st.Delivered != 1 {
		t.Fatalf("%+v, %v", st, err)
	}
	for _, c := range f.srv.Commands() {
		if strings.HasPrefix(c, "PASS") {
			t.Error("auto used PASS on plaintext although APOP was offered")
		}
	}
	// auth = "apop" against a server without a timestamp is refused.
	g := newFixture(t, pop3test.Config{}, testMessages(1))
	g.acct.Auth = AuthAPOP
	_, err := g.poll()
	if !errors.Is(err, pop3.ErrNoAPOP) {
		t.Fatalf("got %v", err)
	}
}

func TestPollNoReceived(t *testing.T) {
	msgs := testMessages(1)
	f := newFixture(t, pop3test.Config{}, msgs)
	f.acct.AddReceived = false
	if _, err := f.poll(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(f.dir, "new"))
	raw, _ := os.ReadFile(filepath.Join(f.dir, "new", entries[0].Name()))
	if string(raw) != string(msgs[0].Data) {
		t.Errorf("got %q", raw)
	}
}

func TestPollTraceRedactsPassword(t *testing.T) {
	f := newFixture(t, pop3test.Config{}, testMessages(1))
	var trace bytes.Buffer
	if _, err := Poll(context.Background(), f.acct, f.store, f.md, &Options{Trace: &trace}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(trace.String(), "wonderland") {
		t.Fatalf("trace holds the password:\n%s", trace.String())
	}
	if !strings.Contains(trace.String(), "test C: PASS <redacted>") || !strings.Contains(trace.String(), "test S: <") {
		t.Errorf("trace:\n%s", trace.String())
	}
}

func TestCheck(t *testing.T) {
	f := newFixture(t, pop3test.Config{}, testMessages(3))
	f.acct.Keep = true
	f.acct.FetchLimit = 1
	if _, err := f.poll(); err != nil {
		t.Fatal(err)
	}
	st, err := Check(context.Background(), f.acct, f.store, nil)
	if err != nil || st.Messages != 3 || st.New != 2 {
		t.Fatalf("%+v, %v", st, err)
	}
	if f.srv.Count("RETR") != 1 || f.srv.Count("DELE") != 0 {
		t.Errorf("Check downloaded or deleted: RETR %d DELE %d", f.srv.Count("RETR"), f.srv.Count("DELE"))
	}
}
