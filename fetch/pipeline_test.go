package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// spy wraps a Deliverer and tracks each message (by the number in its
// Subject) through Stage, Publish and Flush.
type spy struct {
	inner        deliver.Deliverer
	publishDelay time.Duration

	mu          sync.Mutex
	published   map[string]bool // uid -> published since the last Flush
	flushed     map[string]bool // uid -> durable
	outstanding int             // staged, not yet published or aborted
	maxOut      int
}

func newSpy(inner deliver.Deliverer) *spy {
	return &spy{inner: inner, published: map[string]bool{}, flushed: map[string]bool{}}
}

var subjectNum = regexp.MustCompile(`Subject: message (\d+)`)

func (s *spy) Stage(ctx context.Context, r io.Reader, env deliver.Envelope) (deliver.Staged, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	uid := ""
	if m := subjectNum.FindSubmatch(data); m != nil {
		uid = "uid-" + string(m[1])
	}
	st, err := s.inner.Stage(ctx, bytes.NewReader(data), env)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.outstanding++
	s.maxOut = max(s.maxOut, s.outstanding)
	s.mu.Unlock()
	return &spyStaged{spy: s, inner: st, uid: uid}, nil
}

func (s *spy) Flush() error {
	s.mu.Lock()
	pending := s.published
	s.published = map[string]bool{}
	s.mu.Unlock()
	if err := s.inner.Flush(); err != nil {
		return err
	}
	s.mu.Lock()
	for uid := range pending {
		s.flushed[uid] = true
	}
	s.mu.Unlock()
	return nil
}

func (s *spy) Close() error { return s.inner.Close() }

func (s *spy) isFlushed(uid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushed[uid]
}

type spyStaged struct {
	spy   *spy
	inner deliver.Staged
	uid   string
	done  bool
}

func (st *spyStaged) Publish(ctx context.Context) error {
	time.Sleep(st.spy.publishDelay)
	err := st.inner.Publish(ctx)
	st.spy.mu.Lock()
	defer st.spy.mu.Unlock()
	if !st.done {
		st.spy.outstanding--
		st.done = true
	}
	if err == nil {
		st.spy.published[st.uid] = true
	}
	return err
}

func (st *spyStaged) Abort() {
	st.inner.Abort()
	st.spy.mu.Lock()
	defer st.spy.mu.Unlock()
	if !st.done {
		st.spy.outstanding--
		st.done = true
	}
}

func TestPollPipelined(t *testing.T) {
	msgs := testMessages(60)
	f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
	st, err := f.poll()
	if err != nil || st.Delivered != 60 || st.Deleted != 60 {
		t.Fatalf("%+v, %v", st, err)
	}
	f.assertDelivered(msgs)
	if n := len(f.srv.Messages()); n != 0 {
		t.Errorf("%d messages left", n)
	}
	if d := f.srv.Deepest(); d < 10 {
		t.Errorf("at most %d commands in one flight: not pipelining", d)
	}
}

func TestPollPipeliningOff(t *testing.T) {
	f := newFixture(t, pop3test.Config{Pipelining: true}, testMessages(10))
	f.acct.Pipelining = PipeliningOff
	if st, err := f.poll(); err != nil || st.Delivered != 10 {
		t.Fatalf("%+v, %v", st, err)
	}
	if d := f.srv.Deepest(); d != 1 {
		t.Errorf("%d commands in one flight with pipelining off", d)
	}
}

// TestPollDeleOnlyAfterCommit checks, at the moment each DELE reaches the
// server, that its message is durable (published and flushed) and its UID
// committed.
func TestPollDeleOnlyAfterCommit(t *testing.T) {
	for _, pipelining := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			msgs := testMessages(300)
			var f *fixture
			var sp *spy
			var mu sync.Mutex
			var violations []string
			checked := 0
			cfg := pop3test.Config{Pipelining: pipelining, Hook: func(line string) {
				var n int
				if _, err := fmt.Sscanf(line, "DELE %d", &n); err != nil {
					return
				}
				uid := fmt.Sprintf("uid-%d", n)
				seen, err := f.store.Seen(f.acct.Key(), []string{uid})
				mu.Lock()
				defer mu.Unlock()
				checked++
				if err != nil || !seen[0] {
					violations = append(violations, uid+" not recorded")
				}
				if !sp.isFlushed(uid) {
					violations = append(violations, uid+" not durable")
				}
			}}
			f = newFixture(t, cfg, msgs)
			sp = newSpy(f.md)
			tune := tuning{window: 32, syncers: 3, queue: 4, batch: 7, batchWait: time.Millisecond}
			st, err := Poll(context.Background(), f.acct, f.store, sp, &Options{tune: &tune})
			if err != nil || st.Delivered != 300 || st.Deleted != 300 {
				t.Fatalf("%+v, %v", st, err)
			}
			if checked != 300 || len(violations) > 0 {
				t.Fatalf("checked %d DELEs; violations: %v", checked, violations)
			}
			f.assertDelivered(msgs)
		})
	}
}

// TestPollNoNewMailRoundTrips: a poll of a big kept mailbox with nothing
// new is CAPA, USER+PASS, UIDL and QUIT: four flights, no LIST, no RETR.
// Nothing goes behind PASS (see TestQuirkLoginDiscardsInput).
func TestPollNoNewMailRoundTrips(t *testing.T) {
	var msgs []pop3test.Message
	for i := 0; i < 5000; i++ {
		msgs = append(msgs, pop3test.Message{UID: fmt.Sprintf("u%05d", i), Data: []byte("Subject: s\n\nx\n")})
	}
	f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
	f.acct.Keep = true
	if st, err := f.poll(); err != nil || st.Delivered != 5000 {
		t.Fatalf("first poll: %+v, %v", st, err)
	}
	flights, lists, retrs := f.srv.Flights(), f.srv.Count("LIST"), f.srv.Count("RETR")
	st, err := f.poll()
	if err != nil || st.New != 0 || st.Messages != 5000 {
		t.Fatalf("second poll: %+v, %v", st, err)
	}
	if n := f.srv.Flights() - flights; n != 4 {
		t.Errorf("the no-new-mail poll took %d flights, want 4 (CAPA, USER+PASS, UIDL, QUIT)", n)
	}
	if f.srv.Count("LIST") != lists || f.srv.Count("RETR") != retrs {
		t.Errorf("the no-new-mail poll sent LIST or RETR")
	}
}

func TestPollAPOPPipelinedRoundTrips(t *testing.T) {
	f := newFixture(t, pop3test.Config{Pipelining: true, APOP: true}, testMessages(3))
	f.acct.Keep = true
	if _, err := f.poll(); err != nil {
		t.Fatal(err)
	}
	flights := f.srv.Flights()
	if _, err := f.poll(); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.Flights() - flights; n != 4 {
		t.Errorf("a no-new-mail poll with APOP took %d flights, want 4 (CAPA, APOP, UIDL, QUIT)", n)
	}
	for _, c := range f.srv.Commands() {
		if strings.HasPrefix(c, "PASS") {
			t.Errorf("PASS sent on plaintext although APOP was offered")
		}
	}
}

func TestPollPipelinedLargeMessages(t *testing.T) {
	// Big replies fill the socket buffers both ways: the reader and the
	// writer must not wait for each other.
	var msgs []pop3test.Message
	for i := 1; i <= 24; i++ {
		msgs = append(msgs, pop3test.Message{UID: fmt.Sprintf("big-%d", i),
			Data: append([]byte(fmt.Sprintf("Subject: message %d\n\n", i)), bytes.Repeat([]byte("0123456789abcdef\n"), 120_000)...)})
	}
	f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
	done := make(chan struct{})
	var st Stats
	var err error
	go func() {
		st, err = f.poll()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("pipelined fetch of large messages hung")
	}
	if err != nil || st.Delivered != 24 {
		t.Fatalf("%+v, %v", st, err)
	}
	f.assertDelivered(msgs)
}

// TestPollSlowDiskBoundsStaging: when publishing is slower than the
// network, the reader waits instead of piling up staged messages.
func TestPollSlowDiskBoundsStaging(t *testing.T) {
	f := newFixture(t, pop3test.Config{Pipelining: true}, testMessages(120))
	sp := newSpy(f.md)
	sp.publishDelay = 2 * time.Millisecond
	tune := tuning{window: 64, syncers: 2, queue: 3, batch: 16, batchWait: 5 * time.Millisecond}
	st, err := Poll(context.Background(), f.acct, f.store, sp, &Options{tune: &tune})
	if err != nil || st.Delivered != 120 {
		t.Fatalf("%+v, %v", st, err)
	}
	// At most: the queue, a batch with the sequencer, and the one being handed over.
	if limit := max(tune.queue, tune.batch) + tune.batch + 1; sp.maxOut > limit {
		t.Errorf("%d messages staged at once, want at most %d", sp.maxOut, limit)
	}
}

func TestPollPipelinedConnectionDropped(t *testing.T) {
	msgs := testMessages(50)
	f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
	f.srv.SetFaults(pop3test.Fault{Command: "RETR", Nth: 30, Action: pop3test.DropAfter, Bytes: 40})
	tune := tuning{window: 16, syncers: 2, queue: 4, batch: 8, batchWait: time.Millisecond}
	st, err := Poll(context.Background(), f.acct, f.store, f.md, &Options{tune: &tune})
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindNetwork {
		t.Fatalf("got %v", err)
	}
	if n := len(f.srv.Messages()); n != 50 {
		t.Fatalf("server holds %d, want 50 (no QUIT, no deletion)", n)
	}
	// Everything delivered before the drop was committed, so the rerun
	// does not fetch it again. How much arrived varies: the server closes
	// with pipelined commands unread, so its kernel sends a reset, and a
	// reset makes the client's kernel drop replies not yet read.
	got := len(f.delivered())
	if got != st.Delivered || got == 0 {
		t.Errorf("%d in the Maildir, %d counted delivered", got, st.Delivered)
	}
	f.srv.SetFaults()
	retrs := f.srv.Count("RETR")
	st2, err := f.poll()
	if err != nil {
		t.Fatal(err)
	}
	if n := f.srv.Count("RETR") - retrs; n != 50-got {
		t.Errorf("rerun fetched %d, want %d", n, 50-got)
	}
	if st2.Deleted != 50 {
		t.Errorf("rerun deleted %d", st2.Deleted)
	}
	f.assertDelivered(msgs)
}

func TestPollPipelinedRetrRefused(t *testing.T) {
	msgs := testMessages(5)
	f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
	f.srv.SetFaults(pop3test.Fault{Command: "RETR", Nth: 2, Action: pop3test.Reply, Reply: "-ERR [SYS/TEMP] cannot read message"})
	st, err := f.poll()
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindServer || !strings.Contains(err.Error(), "cannot read") {
		t.Fatalf("got %v", err)
	}
	if st.Delivered != 4 || st.Failed != 1 || st.Deleted != 4 {
		t.Errorf("stats %+v", st)
	}
	if left := f.srv.Messages(); len(left) != 1 || left[0].UID != "uid-2" {
		t.Errorf("server holds %v", left)
	}
}
