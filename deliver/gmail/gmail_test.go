package gmail_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/gmail"
	"github.com/popfetch/popfetch/deliver/gmail/gmailtest"
)

// fixture is a fake mailbox and a client of it that records its waits
// instead of sleeping.
type fixture struct {
	srv       *gmailtest.Server
	client    *gmail.Client
	mu        sync.Mutex
	waits     []time.Duration
	refreshes atomic.Int32
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{srv: gmailtest.New()}
	t.Cleanup(f.srv.Close)
	f.client = &gmail.Client{
		BaseURL:      f.srv.URL,
		Token:        func(context.Context) (string, error) { return gmailtest.Token, nil },
		TokenRefused: func() { f.refreshes.Add(1) },
		Timeout:      5 * time.Second,
		Sleep: func(ctx context.Context, d time.Duration) error {
			f.mu.Lock()
			f.waits = append(f.waits, d)
			f.mu.Unlock()
			return ctx.Err()
		},
	}
	t.Cleanup(func() {
		if v := f.srv.Violations(); len(v) > 0 {
			t.Errorf("requests against the contract:\n%s", strings.Join(v, "\n"))
		}
	})
	return f
}

func (f *fixture) target(labels ...string) *gmail.Target {
	t := &gmail.Target{Client: f.client, Name: "gmail test", SpoolDir: ""}
	if labels != nil {
		t.Labels = labels
	}
	return t
}

// message is test message i, with extra header fields (each ending in
// LF).
func message(i int, extra string) string {
	return fmt.Sprintf("Message-ID: <m%d.test@example.org>\nDate: Mon, 2 Nov 2026 10:00:%02d +0000\nFrom: a@example.org\nTo: b@example.com\nSubject: test %d\n%s\nbody %d\n.. dot line\n", i, i%60, i, extra, i)
}

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func deliverOne[R string | readerOnly](t *testing.T, tg *gmail.Target, msg R) error {
	t.Helper()
	var r io.Reader
	switch m := any(msg).(type) {
	case string:
		r = strings.NewReader(m)
	case readerOnly:
		r = m
	}
	st, err := tg.Stage(context.Background(), r, deliver.Envelope{})
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	defer st.Abort()
	if err := st.Publish(context.Background()); err != nil {
		return err
	}
	return tg.Flush()
}

func TestImportLabels(t *testing.T) {
	tests := []struct {
		name       string
		labels     []string // nil: the default
		existing   []string // user labels made beforehand
		wantLabels []string // names; user labels are mapped to ids
		wantCreate int
	}{
		{name: "default", wantLabels: []string{"INBOX", "UNREAD"}},
		{name: "archived, read", labels: []string{}, wantLabels: nil},
		{name: "new user label created", labels: []string{"INBOX", "ISP/Old mail"}, wantLabels: []string{"INBOX", "ISP/Old mail"}, wantCreate: 1},
		{name: "existing user label", labels: []string{"Fetched"}, existing: []string{"Fetched"}, wantLabels: []string{"Fetched"}},
		{name: "case of an existing label", labels: []string{"inbox", "fetched"}, existing: []string{"Fetched"}, wantLabels: []string{"INBOX", "Fetched"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			for _, l := range tt.existing {
				f.srv.AddLabel(l)
			}
			tg := f.target(tt.labels...)
			if tt.labels != nil && len(tt.labels) == 0 {
				tg.Labels = []string{}
			}
			for i := range 3 {
				if err := deliverOne(t, tg, message(i, "")); err != nil {
					t.Fatal(err)
				}
			}
			msgs := f.srv.Messages()
			if len(msgs) != 3 {
				t.Fatalf("%d messages in the mailbox, want 3", len(msgs))
			}
			ids := map[string]string{}
			for _, l := range f.srv.Labels() {
				ids[l.Name] = l.ID
			}
			var want []string
			for _, n := range tt.wantLabels {
				want = append(want, ids[n])
			}
			for i, m := range msgs {
				if !bytes.Equal(m.Raw, crlf(message(i, ""))) {
					t.Errorf("message %d arrived as %q", i, m.Raw)
				}
				if fmt.Sprint(m.LabelIDs) != fmt.Sprint(want) {
					t.Errorf("message %d has labels %v, want %v", i, m.LabelIDs, want)
				}
				if m.InternalDateSource != "dateHeader" || m.NeverMarkSpam {
					t.Errorf("message %d: internalDateSource %q, neverMarkSpam %v", i, m.InternalDateSource, m.NeverMarkSpam)
				}
			}
			count := map[string]int{}
			for _, op := range f.srv.Ops() {
				count[op]++
			}
			wantLists := 1
			if len(tt.wantLabels) == 0 {
				wantLists = 0
			}
			if count["labels.list"] != wantLists || count["labels.create"] != tt.wantCreate || count["import"] != 3 {
				t.Errorf("requests %v: want labels looked up %d time(s) a poll, %d created, 3 imports", count, wantLists, tt.wantCreate)
			}
		})
	}
}

func TestImportSpam(t *testing.T) {
	for _, never := range []bool{false, true} {
		t.Run(fmt.Sprint("never_mark_spam=", never), func(t *testing.T) {
			f := newFixture(t)
			tg := f.target()
			tg.NeverMarkSpam = never
			if err := deliverOne(t, tg, message(1, "X-Fake-Spam: yes\n")); err != nil {
				t.Fatal(err)
			}
			m := f.srv.Messages()[0]
			spam := strings.Contains(fmt.Sprint(m.LabelIDs), "SPAM")
			if spam == never || m.NeverMarkSpam != never {
				t.Errorf("labels %v with neverMarkSpam=%v", m.LabelIDs, m.NeverMarkSpam)
			}
			// A message classified as spam is found when settling.
			ok, err := tg.Delivered(context.Background(), "m1.test@example.org")
			if err != nil || !ok {
				t.Errorf("Delivered = %v, %v; want found", ok, err)
			}
		})
	}
}

func TestImportFaults(t *testing.T) {
	hostile := `{"error":{"code":500,"message":"\u001b]0;pwned\u0007\u001b[2J` + strings.Repeat("A", 60<<10) + `","status":"INTERNAL\r\nX-Evil: 1"}}`
	huge := "\x1b]0;pwned\x07\x1b[2J\r\n\xff\xfe" + strings.Repeat("B\x00", 4<<20)
	tests := []struct {
		name        string
		faults      []gmailtest.Fault
		maxAttempts int
		want        int             // messages in the mailbox afterwards
		wantErr     string          // "" for success
		temporary   bool            // when an error is wanted
		wantWaits   []time.Duration // exact waits, when set
		refreshes   int32
	}{
		{name: "429 with Retry-After", faults: []gmailtest.Fault{{Op: "import", Kind: gmailtest.Fault429, RetryAfter: "3"}},
			want: 1, wantWaits: []time.Duration{3 * time.Second}},
		{name: "403 user rate limit", faults: []gmailtest.Fault{{Op: "import", Kind: gmailtest.Fault403Rate}}, want: 1},
		{name: "500, nothing stored", faults: []gmailtest.Fault{{Op: "import", Kind: gmailtest.Fault500}}, want: 1},
		{name: "500 after storing", faults: []gmailtest.Fault{{Op: "import", Kind: gmailtest.Fault500Done}}, want: 1},
		{name: "500 on labels.list", faults: []gmailtest.Fault{{Op: "labels.list", Kind: gmailtest.Fault500}}, want: 1},
		{name: "401 once", faults: []gmailtest.Fault{{Op: "import", Kind: gmailtest.Fault401}}, want: 1, refreshes: 1},
		{name: "401 twice", faults: []gmailtest.Fault{{Op: "import", Kind: gmailtest.Fault401}, {Op: "import", Kind: gmailtest.Fault401}},
			want: 0, wantErr: "HTTP 401 UNAUTHENTICATED (authError): Invalid Credentials", refreshes: 1},
		{name: "connection dropped mid-upload", faults: []gmailtest.Fault{{Op: "import", Kind: gmailtest.FaultDrop}}, want: 1},
		{name: "reply lost", faults: []gmailtest.Fault{{Op: "import", Kind: gmailtest.FaultLoseReply}}, want: 1},
		{name: "slow reply", faults: []gmailtest.Fault{{Op: "import", Kind: gmailtest.FaultSlow, Delay: time.Second}}, want: 1},
		{name: "hostile error body", faults: []gmailtest.Fault{{Op: "import", Kind: gmailtest.FaultHostile, Body: hostile}},
			maxAttempts: 1, want: 0, wantErr: "HTTP 500 INTERNAL X-Evil: 1: ?]0;pwned??[2JAAAA", temporary: true},
		{name: "huge hostile error body", faults: []gmailtest.Fault{{Op: "import", Kind: gmailtest.FaultHostile, Body: huge}},
			maxAttempts: 1, want: 0, wantErr: "HTTP 500: ?]0;pwned??[2J ??B?B?", temporary: true},
		{name: "rate limited past the bound", faults: []gmailtest.Fault{{Op: "import", Kind: gmailtest.Fault429, RetryAfter: "3600"}},
			want: 0, wantErr: "not waiting 1h0m0s more", temporary: true},
		{name: "429 every time", faults: []gmailtest.Fault{{Op: "import", Kind: gmailtest.Fault429}, {Op: "import", Kind: gmailtest.Fault429},
			{Op: "import", Kind: gmailtest.Fault429}}, maxAttempts: 3, want: 0, wantErr: "gave up after 3 attempts", temporary: true},
		{name: "token lacks a scope", faults: []gmailtest.Fault{{Op: "labels.list", Kind: gmailtest.Fault403Scope}},
			want: 0, wantErr: "insufficientPermissions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.client.MaxAttempts = tt.maxAttempts
			if tt.name == "slow reply" {
				f.client.Timeout = 300 * time.Millisecond
			}
			f.srv.Inject(tt.faults...)
			err := deliverOne(t, f.target(), message(7, ""))
			if got := len(f.srv.Messages()); got != tt.want {
				t.Errorf("%d messages in the mailbox, want %d", got, tt.want)
			}
			if got := f.refreshes.Load(); got != tt.refreshes {
				t.Errorf("token refreshed %d times, want %d", got, tt.refreshes)
			}
			if tt.wantWaits != nil && fmt.Sprint(f.waits) != fmt.Sprint(tt.wantWaits) {
				t.Errorf("waited %v, want %v", f.waits, tt.wantWaits)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Publish: %v", err)
				}
				return
			}
			var de *deliver.Error
			if !errors.As(err, &de) {
				t.Fatalf("Publish: %v (%T), want a *deliver.Error", err, err)
			}
			if de.Temporary != tt.temporary {
				t.Errorf("temporary = %v, want %v: %v", de.Temporary, tt.temporary, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantErr) {
				t.Errorf("error %q does not say %q", msg, tt.wantErr)
			}
			if len(msg) > 1000 || strings.ContainsAny(msg, "\x1b\x07\r\n") {
				t.Errorf("error is %d octets or has control characters: %q", len(msg), msg[:min(len(msg), 300)])
			}
		})
	}
}

// TestSettleAfterCrash is the crash case: an import whose reply was lost
// (or whose upload broke off), with the process gone before it could
// look; the next poll settles the pending record by Message-ID.
func TestSettleAfterCrash(t *testing.T) {
	tests := []struct {
		name      string
		fault     gmailtest.FaultKind
		noMsgID   bool
		found     bool // what Delivered says
		wantAfter int  // copies in the mailbox after the next poll
	}{
		{name: "reply lost: found, not fetched again", fault: gmailtest.FaultLoseReply, found: true, wantAfter: 1},
		{name: "upload cut: not found, fetched again", fault: gmailtest.FaultDrop, found: false, wantAfter: 1},
		{name: "500 before storing: fetched again", fault: gmailtest.Fault500, found: false, wantAfter: 1},
		// Without a Message-ID nothing can be found: the message is
		// imported again, and is then in the mailbox twice.
		{name: "no Message-ID, reply lost: twice", fault: gmailtest.FaultLoseReply, noMsgID: true, found: false, wantAfter: 2},
		{name: "no Message-ID, upload cut: once", fault: gmailtest.FaultDrop, noMsgID: true, found: false, wantAfter: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			msg := message(3, "")
			if tt.noMsgID {
				msg = msg[strings.IndexByte(msg, '\n')+1:]
			}
			// The interrupted run: one attempt, then the process dies.
			f.client.MaxAttempts = 1
			tg := f.target()
			st, err := tg.Stage(context.Background(), strings.NewReader(msg), deliver.Envelope{})
			if err != nil {
				t.Fatal(err)
			}
			id := st.(*gmail.Staged).MessageID()
			if (id == "") != tt.noMsgID {
				t.Fatalf("MessageID() = %q", id)
			}
			f.srv.Inject(gmailtest.Fault{Op: "import", Kind: tt.fault})
			if err := st.Publish(context.Background()); err == nil {
				t.Fatal("Publish succeeded through the fault")
			}
			// The next poll: a new Target settles the pending record.
			f.client.MaxAttempts = 0
			next := f.target()
			found, err := next.Delivered(context.Background(), id)
			if err != nil || found != tt.found {
				t.Fatalf("Delivered = %v, %v; want %v", found, err, tt.found)
			}
			if !found {
				if err := deliverOne(t, next, msg); err != nil {
					t.Fatal(err)
				}
			}
			if got := len(f.srv.Messages()); got != tt.wantAfter {
				t.Errorf("%d copies in the mailbox, want %d", got, tt.wantAfter)
			}
		})
	}
}

func TestSettleFailure(t *testing.T) {
	f := newFixture(t)
	f.srv.Inject(gmailtest.Fault{Op: "messages.list", Kind: gmailtest.Fault403Scope})
	_, err := f.target().Delivered(context.Background(), "x@example.org")
	var de *deliver.Error
	if !errors.As(err, &de) || de.Temporary || !strings.Contains(err.Error(), "insufficient authentication scopes") {
		t.Errorf("Settle without the search scope: %v", err)
	}
}

// TestConcurrentTargets: two accounts deliver into one Gmail mailbox at
// once, both into a label that does not exist yet.
func TestConcurrentTargets(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for a := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tg := f.target("INBOX", "From ISP")
			for i := range 20 {
				st, err := tg.Stage(context.Background(), strings.NewReader(message(a*100+i, "")), deliver.Envelope{})
				if err == nil {
					err = st.Publish(context.Background())
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(f.srv.Messages()); n != 40 {
		t.Errorf("%d messages, want 40", n)
	}
	n := 0
	for _, l := range f.srv.Labels() {
		if l.Name == "From ISP" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("label created %d times", n)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		r.n--
		return copy(p, "Subject: x\n"), nil
	}
	return 0, io.ErrUnexpectedEOF
}

func TestStage(t *testing.T) {
	f := newFixture(t)
	tg := f.target()
	// A message cut short is returned as the reader's error, unwrapped.
	if _, err := tg.Stage(context.Background(), &failingReader{n: 3}, deliver.Envelope{}); err != io.ErrUnexpectedEOF {
		t.Errorf("Stage of a cut message: %v", err)
	}
	tests := []struct{ in, id string }{
		{"Message-ID: <a@b>\n\nx\n", "a@b"},
		{"Message-Id:   <a.b@c> (comment)\n\nx\n", "a.b@c"},
		{"Message-ID: a@b\n\nx\n", ""},                      // no brackets
		{"Message-ID: <a b@c>\n\nx\n", ""},                  // white space
		{"Message-ID: <a\"@c>\n\nx\n", ""},                  // a quote would change the query
		{"Message-ID: <a@b>\nMessage-ID: <c@d>\n\nx\n", ""}, // two
		{"Subject: none\n\nx\n", ""},
		{"\x00\x01garbage", ""},
		{"Message-ID: <a@b>\r\nSubject: crlf kept\r\n\r\nx\r\n", "a@b"},
	}
	for _, tt := range tests {
		st, err := tg.Stage(context.Background(), strings.NewReader(tt.in), deliver.Envelope{})
		if err != nil {
			t.Fatal(err)
		}
		s := st.(*gmail.Staged)
		if s.MessageID() != tt.id {
			t.Errorf("MessageID of %q = %q, want %q", tt.in, s.MessageID(), tt.id)
		}
		if want := int64(len(strings.ReplaceAll(strings.ReplaceAll(tt.in, "\r\n", "\n"), "\n", "\r\n"))); s.Size() != want {
			t.Errorf("size of %q = %d, want %d", tt.in, s.Size(), want)
		}
		st.Abort()
	}
}

// bigReader is a message of n octets that is never held in memory.
type sizedReaderAt int64

func (s sizedReaderAt) ReadAt(p []byte, off int64) (int, error) { return 0, io.EOF }

func TestImportTooLarge(t *testing.T) {
	f := newFixture(t)
	_, err := f.client.Import(context.Background(), sizedReaderAt(0), gmail.MaxMessageSize+1, gmail.ImportOptions{})
	var ae *gmail.APIError
	if !errors.As(err, &ae) || ae.Temporary() {
		t.Errorf("import of a message over the limit: %v", err)
	}
	if len(f.srv.Ops()) != 0 {
		t.Errorf("requests were made: %v", f.srv.Ops())
	}
}

// patternReader is a message of n octets made up as it is read.
type patternReader struct{ n, off int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)]
	for i := range p {
		if (r.off+int64(i))%64 == 63 {
			p[i] = '\n'
		} else {
			p[i] = 'x'
		}
	}
	r.off += int64(len(p))
	return len(p), nil
}

// TestImportStreams: a 64 MiB message goes from the reader through the
// spool to the upload without being held in memory.
func TestImportStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 128 MiB through the spool and the fake")
	}
	f := newFixture(t)
	f.srv.SetDiscardBodies(true)
	const size = 64 << 20
	body := io.MultiReader(strings.NewReader(message(1, "")), &patternReader{n: size})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := deliverOne(t, f.target(), readerOnly{body}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	m := f.srv.Messages()[0]
	if m.Size < size {
		t.Errorf("%d octets arrived", m.Size)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d MiB message: %.1f MiB allocated in all (client, spool and fake)", size>>20, float64(alloc)/(1<<20))
	if alloc > 16<<20 {
		t.Errorf("%d MiB allocated for a %d MiB message", alloc>>20, size>>20)
	}
}

type readerOnly struct{ io.Reader }

func TestCheckLabels(t *testing.T) {
	tests := []struct {
		labels []string
		err    string
	}{
		{nil, ""},
		{[]string{"INBOX", "UNREAD", "Lists/ISP", "STARRED"}, ""},
		{[]string{"INBOX", ""}, "an empty label name"},
		{[]string{" ISP"}, "white space around it"},
		{[]string{"IS\x1bP"}, "control characters"},
		{[]string{"Sent"}, "Gmail's own"},
		{[]string{"ISP", "isp"}, "listed twice"},
	}
	for _, tt := range tests {
		err := gmail.CheckLabels(tt.labels)
		if (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("CheckLabels(%q) = %v, want %q", tt.labels, err, tt.err)
		}
	}
}

// BenchmarkImport4KiB imports 4 KiB messages into the fake over loopback:
// the client's own cost per message, without the network's.
func BenchmarkImport4KiB(b *testing.B) {
	srv := gmailtest.New()
	defer srv.Close()
	srv.SetDiscardBodies(true)
	c := &gmail.Client{BaseURL: srv.URL, Token: func(context.Context) (string, error) { return gmailtest.Token, nil }}
	tg := &gmail.Target{Client: c}
	msg := message(1, "") + strings.Repeat("0123456789abcdef0123456789abcde\n", 4096/32)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		st, err := tg.Stage(context.Background(), strings.NewReader(msg), deliver.Envelope{})
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Publish(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// TestImportHTTP2: over TLS and HTTP/2, as Google serves the API, the
// upload streams, and a stream reset mid-upload or before the reply is
// recovered from as a dropped connection is.
func TestImportHTTP2(t *testing.T) {
	srv := gmailtest.NewTLS()
	defer srv.Close()
	c := &gmail.Client{BaseURL: srv.URL, HTTP: srv.Client(),
		Token: func(context.Context) (string, error) { return gmailtest.Token, nil },
		Sleep: func(context.Context, time.Duration) error { return nil }}
	tg := &gmail.Target{Client: c}
	srv.Inject(gmailtest.Fault{Op: "import", Kind: gmailtest.FaultDrop}, gmailtest.Fault{Op: "import", Kind: gmailtest.FaultLoseReply})
	for i := range 3 {
		if err := deliverOne(t, tg, message(i, "")); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(srv.Messages()); n != 3 {
		t.Errorf("%d messages, want 3", n)
	}
	for _, p := range srv.Protos() {
		if p != "HTTP/2.0" {
			t.Errorf("a request over %s", p)
		}
	}
	if v := srv.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
}

// TestPublishCancelled: a poll stopped mid-import (SIGTERM, the poll's
// ceiling) returns at once with a temporary failure.
func TestPublishCancelled(t *testing.T) {
	f := newFixture(t)
	f.srv.Inject(gmailtest.Fault{Op: "import", Kind: gmailtest.FaultSlow, Delay: time.Second})
	tg := f.target()
	st, err := tg.Stage(context.Background(), strings.NewReader(message(1, "")), deliver.Envelope{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = st.Publish(ctx)
	var de *deliver.Error
	if !errors.As(err, &de) || !de.Temporary || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Publish = %v, want a temporary failure for the deadline", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Publish took %v after its context ended", d)
	}
}

// TestSettler: pending records carry the Message-ID (or a key that can
// be no Message-ID), and the next poll's Target settles those of its own
// mailbox.
func TestSettler(t *testing.T) {
	f := newFixture(t)
	tg := f.target()
	tg.Identity = "gmail /state/oauth2/a.gmail.json"
	var refs []deliver.Ref
	for i, msg := range []string{message(1, ""), message(2, ""), "Subject: no id\n\nx\n"} {
		st, err := tg.Stage(context.Background(), strings.NewReader(msg), deliver.Envelope{})
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, st.(deliver.Referenced).Ref())
		if i != 1 { // message 2 never arrives
			if err := st.Publish(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		st.Abort()
	}
	if refs[0].Kind != "gmail" || refs[0].Key != "m1.test@example.org" || refs[2].Key == "" {
		t.Errorf("refs %+v", refs)
	}
	var _ deliver.Settler = tg
	next := f.target()
	next.Identity = tg.Identity
	if !next.Settles(refs[0]) {
		t.Error("a Target does not settle its own mailbox's records")
	}
	other := f.target()
	other.Identity = "gmail /state/oauth2/b.gmail.json"
	if other.Settles(refs[0]) || next.Settles(deliver.Ref{Kind: "imap", Target: tg.Identity, Key: "x"}) {
		t.Error("a Target settles another mailbox's records")
	}
	found, err := next.Settle(context.Background(), refs)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(found) != "[true false false]" {
		t.Errorf("Settle = %v, want [true false false] (the last has no Message-ID)", found)
	}
}

// TestSettleWaitsForSearchIndex: a message imported just before a crash
// may not be found by a search yet (the index lags the mailbox); a record
// younger than SettleGrace is looked for again once it is that old, and
// only then reported missing. An old record is not waited for.
func TestSettleWaitsForSearchIndex(t *testing.T) {
	tests := []struct {
		name  string
		age   time.Duration // of the pending record
		grace time.Duration
		lag   time.Duration // of the fake's search index
		found bool
		waits bool
	}{
		{name: "young record, lagging index: found after the wait", grace: 600 * time.Millisecond, lag: 300 * time.Millisecond, found: true, waits: true},
		{name: "old record, not imported: not waited for", age: time.Minute, grace: 600 * time.Millisecond, lag: 300 * time.Millisecond, found: false},
		{name: "young record, never imported: missing after the wait", grace: 300 * time.Millisecond, found: false, waits: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.srv.SetSearchLag(tt.lag)
			tg := f.target()
			st, err := tg.Stage(context.Background(), strings.NewReader(message(1, "")), deliver.Envelope{})
			if err != nil {
				t.Fatal(err)
			}
			ref := st.(deliver.Referenced).Ref()
			ref.Begun = time.Now().Add(-tt.age)
			if tt.found {
				if err := st.Publish(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			st.Abort()
			next := f.target()
			next.SettleGrace = tt.grace
			start := time.Now()
			found, err := next.Settle(context.Background(), []deliver.Ref{ref})
			took := time.Since(start)
			if err != nil || found[0] != tt.found {
				t.Fatalf("Settle = %v, %v; want [%v]", found, err, tt.found)
			}
			if waited := took >= tt.grace/2; waited != tt.waits {
				t.Errorf("Settle took %v (grace %v); want a wait: %v", took, tt.grace, tt.waits)
			}
		})
	}
	// The wait ends with the poll's context.
	f := newFixture(t)
	next := f.target()
	next.SettleGrace = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := next.Settle(ctx, []deliver.Ref{{Kind: gmail.Kind, Target: next.Name, Key: "gone@example.org", Begun: time.Now()}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Settle after the context ended: %v", err)
	}
}

// TestSettleClockSetBack: a pending record written before the clock was
// set back is ahead of now; Settle waits no more than the grace for it,
// not until the clock catches up (which would hold every poll until its
// ceiling, and fail it, for as long as the clock is behind).
func TestSettleClockSetBack(t *testing.T) {
	f := newFixture(t)
	next := f.target()
	next.SettleGrace = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ref := deliver.Ref{Kind: gmail.Kind, Target: next.Name, Key: "gone@example.org", Begun: time.Now().Add(24 * time.Hour)}
	start := time.Now()
	found, err := next.Settle(ctx, []deliver.Ref{ref})
	if err != nil || found[0] {
		t.Fatalf("Settle = %v, %v; want [false] once the grace has passed", found, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Settle took %v with a grace of %v", took, next.SettleGrace)
	}
}
