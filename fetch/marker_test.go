package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
	"github.com/popfetch/popfetch/uidstore"
)

// remoteTarget is a Deliverer a round trip away, as an IMAP server is
// (deliver.Marker): Publish sends and returns, and the wait a Mark gives
// returns a round trip later. It notes what each wait covered and how
// many messages had been published when it returned.
type remoteTarget struct {
	rtt    time.Duration
	failAt int // the first wait (from 1) that fails, and all after it; 0: none

	mu        sync.Mutex
	published []int // the messages' numbers, in the order published
	marks     int
	waited    int
	ahead     int   // the most marks not yet waited for, at any time
	covered   []int // per wait: messages published when it was marked
	overlap   int   // waits that returned after later messages were published
	misuse    []string
}

type remoteStaged struct {
	r   *remoteTarget
	num int
}

func (r *remoteTarget) Stage(ctx context.Context, rd io.Reader, env deliver.Envelope) (deliver.Staged, error) {
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, err
	}
	num := 0
	if ns := subjectNumbers(data); len(ns) == 1 {
		num = ns[0]
	}
	return &remoteStaged{r: r, num: num}, nil
}

func (s *remoteStaged) Publish(context.Context) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.published = append(s.r.published, s.num)
	return nil
}

func (s *remoteStaged) Abort() {}

// Ref makes the messages' pending records the target's own.
func (s *remoteStaged) Ref() deliver.Ref {
	return deliver.Ref{Kind: "remote", Target: "remote", Key: strconv.Itoa(s.num)}
}

func (r *remoteTarget) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.misuse = append(r.misuse, "Flush called on a Marker")
	return nil
}

func (r *remoteTarget) Close() error { return nil }

func (r *remoteTarget) Mark() func() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.marks++
	r.ahead = max(r.ahead, r.marks-r.waited)
	n, upTo := r.marks, len(r.published)
	r.covered = append(r.covered, upTo)
	called := false
	return func() error {
		time.Sleep(r.rtt) // the answers on their way
		r.mu.Lock()
		defer r.mu.Unlock()
		switch {
		case called:
			r.misuse = append(r.misuse, "a wait called twice")
		case n != r.waited+1:
			r.misuse = append(r.misuse, "the waits called out of order")
		}
		called = true
		r.waited = n
		if len(r.published) > upTo {
			r.overlap++
		}
		if r.failAt > 0 && n >= r.failAt { // the connection is gone
			return &deliver.Error{Target: "remote", Temporary: true, Err: errors.New("connection dropped")}
		}
		return nil
	}
}

// TestPollOverlapsRemoteWaits: with a deliverer that waits on another
// machine (deliver.Marker), the next batch is published while the last
// one's answers are on their way, each wait is called once and in order,
// messages still go out in server order, and a UID is recorded and its
// DELE sent only after the wait that covers it.
func TestPollOverlapsRemoteWaits(t *testing.T) {
	const n = 120
	f := newFixture(t, pop3test.Config{Pipelining: true}, testMessages(n))
	r := &remoteTarget{rtt: 5 * time.Millisecond}
	tune := tuning{window: 64, syncers: 4, queue: 64, batch: 8, batchWait: time.Millisecond}
	st, err := Poll(context.Background(), f.acct, f.store, r, &Options{tune: &tune})
	if err != nil || st.Delivered != n {
		t.Fatalf("%+v, %v", st, err)
	}
	if err := inOrder(r.published, n); err != nil {
		t.Error(err)
	}
	if len(r.misuse) > 0 {
		t.Errorf("the deliverer was misused: %v", r.misuse)
	}
	if r.waited != r.marks || r.marks < n/8 {
		t.Errorf("%d marks, %d waited; want one a batch (at least %d)", r.marks, r.waited, n/8)
	}
	if r.overlap == 0 {
		t.Errorf("no wait overlapped the next batch's publishing (%d waits)", r.waited)
	}
	if r.ahead > 2 {
		t.Errorf("%d batches published and not committed at once, want at most 2", r.ahead)
	}
	if left := len(f.srv.Messages()); left != 0 {
		t.Errorf("%d messages left on the server", left)
	}
	t.Logf("%d messages, %d waits, %d of them overlapped by the next batch", n, r.waited, r.overlap)
}

// TestPollRemoteWaitFails: a wait that fails (the IMAP connection dropped
// before the answers came) ends the transfer; what earlier waits covered
// is recorded and deleted, and nothing it or a later wait covered is
// recorded or deleted, though later batches were published meanwhile:
// those stay pending, for Settle at the next poll.
func TestPollRemoteWaitFails(t *testing.T) {
	const n = 80
	f := newFixture(t, pop3test.Config{Pipelining: true}, testMessages(n))
	f.acct.Keep = false
	r := &remoteTarget{rtt: 5 * time.Millisecond, failAt: 3}
	tune := tuning{window: 64, syncers: 4, queue: 64, batch: 8, batchWait: time.Millisecond}
	_, err := Poll(context.Background(), f.acct, f.store, r, &Options{tune: &tune})
	var de *deliver.Error
	if !errors.As(err, &de) {
		t.Fatalf("Poll: %v, want the deliverer's error", err)
	}
	r.mu.Lock()
	safe := r.covered[1] // published when the last good wait was marked
	published := len(r.published)
	r.mu.Unlock()
	// Without QUIT nothing is deleted; and no DELE went out for a message
	// not known to be delivered.
	for _, c := range f.srv.Commands() {
		var num int
		if _, err := fmt.Sscanf(c, "DELE %d", &num); err == nil && num > safe {
			t.Errorf("%s sent, though only the first %d messages were safe", c, safe)
		}
	}
	uids := make([]string, n)
	for i := range uids {
		uids[i] = fmt.Sprintf("uid-%d", i+1)
	}
	seen, err := f.store.Seen(f.acct.Key(), uids)
	if err != nil {
		t.Fatal(err)
	}
	for i, ok := range seen {
		if ok != (i < safe) {
			t.Errorf("message %d recorded: %v, want %v", i+1, ok, i < safe)
		}
	}
	pending, err := f.store.Pending(f.acct.Key())
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != published-safe {
		t.Errorf("%d pending records, want %d (published and not known to be delivered)", len(pending), published-safe)
	}
	t.Logf("%d published, %d recorded, %d pending", published, safe, len(pending))
}

// downTarget is a Deliverer that cannot be reached: each Publish fails
// with a deliver.Error that says so (Down), and is counted.
type downTarget struct {
	remoteTarget
	atStage bool // fail at Stage (where the IMAP target logs in), not Publish
}

type downStaged struct{ remoteStaged }

func (d *downTarget) Stage(ctx context.Context, rd io.Reader, env deliver.Envelope) (deliver.Staged, error) {
	st, err := d.remoteTarget.Stage(ctx, rd, env)
	if err != nil {
		return nil, err
	}
	if d.atStage {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.published = append(d.published, -st.(*remoteStaged).num)
		return nil, &deliver.Error{Target: "imap", Down: true, Err: errors.New("login refused: bad password")}
	}
	return &downStaged{*st.(*remoteStaged)}, nil
}

func (s *downStaged) Publish(context.Context) error {
	d := s.r
	d.mu.Lock()
	defer d.mu.Unlock()
	d.published = append(d.published, -s.num)
	return &deliver.Error{Target: "imap", Down: true, Err: errors.New("login refused: bad password")}
}

// TestPollTargetDown: a target that cannot be reached or refuses the
// login (deliver.Error.Down) is tried once a poll, not once a message
// (each try another refused login at the IMAP server, or another
// timeout); nothing is deleted, and no pending record is left for
// messages never sent.
func TestPollTargetDown(t *testing.T) {
	for _, atStage := range []bool{true, false} {
		t.Run(fmt.Sprintf("at Stage %v", atStage), func(t *testing.T) {
			const n = 40
			f := newFixture(t, pop3test.Config{Pipelining: true}, testMessages(n))
			d := &downTarget{atStage: atStage}
			tune := tuning{window: 64, syncers: 4, queue: 64, batch: 8, batchWait: time.Millisecond}
			st, err := Poll(context.Background(), f.acct, f.store, d, &Options{tune: &tune})
			var de *deliver.Error
			if !errors.As(err, &de) || !de.Down {
				t.Fatalf("Poll: %+v, %v; want the target's error", st, err)
			}
			d.mu.Lock()
			tries := len(d.published)
			d.mu.Unlock()
			if tries != 1 {
				t.Errorf("%d deliveries tried, want 1", tries)
			}
			if st.Failed != 1 || st.Delivered != 0 {
				t.Errorf("stats %+v, want 1 failed, 0 delivered", st)
			}
			if c := f.srv.Count("DELE"); c != 0 {
				t.Errorf("%d DELEs", c)
			}
			if left := len(f.srv.Messages()); left != n {
				t.Errorf("%d messages left on the server, want %d", left, n)
			}
			pending, err := f.store.Pending(f.acct.Key())
			if err != nil || len(pending) != 0 {
				t.Errorf("pending records %v, %v; want none (nothing was sent)", pending, err)
			}
		})
	}
}

// settlingTarget is a remoteTarget that settles its own pending records
// (deliver.Settler), noting the refs it is asked about.
type settlingTarget struct {
	remoteTarget
	refs []deliver.Ref
}

func (s *settlingTarget) Settles(r deliver.Ref) bool { return r.Kind == "remote" }

func (s *settlingTarget) Settle(_ context.Context, refs []deliver.Ref) ([]bool, error) {
	s.refs = append(s.refs, refs...)
	return make([]bool, len(refs)), nil
}

// TestPollSettleBegunNotEarly: the store keeps a pending record's time in
// whole seconds; the time Settle is given is never earlier than the
// record was made, so that a target's grace (the Gmail target's
// settle_grace, the IMAP target's 5 s) is never cut short. The Gmail kill
// loop duplicated messages with a grace of 1 s before.
func TestPollSettleBegunNotEarly(t *testing.T) {
	f := newFixture(t, pop3test.Config{Pipelining: true}, testMessages(1))
	made := time.Now()
	if err := f.store.Pend(f.acct.Key(), []uidstore.Pending{{UID: "uid-1", Kind: "remote", Dir: "remote", Name: "1"}}); err != nil {
		t.Fatal(err)
	}
	d := &settlingTarget{}
	if _, err := Poll(context.Background(), f.acct, f.store, d, nil); err != nil {
		t.Fatal(err)
	}
	if len(d.refs) != 1 {
		t.Fatalf("Settle asked about %v", d.refs)
	}
	if b := d.refs[0].Begun; b.Before(made) {
		t.Errorf("Begun %v, before the record was made (%v)", b, made)
	}
}
