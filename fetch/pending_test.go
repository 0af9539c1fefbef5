package fetch

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
	"github.com/popfetch/popfetch/uidstore"
)

// TestPollResolvesPending: the deliveries an interrupted run left pending
// are settled before the poll, every way a message can have ended up.
func TestPollResolvesPending(t *testing.T) {
	msgs := testMessages(6)
	f := newFixture(t, pop3test.Config{}, msgs)
	key := f.acct.Key()
	write := func(path string, m pop3test.Message) {
		if err := os.WriteFile(filepath.Join(f.dir, path), m.Data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("new/1.M1P1Q1R1.host", msgs[0])      // uid-1: published, not recorded
	write("cur/1.M1P1Q2R1.host:2,S", msgs[1])  // uid-2: and already read
	write("tmp/1.M1P1Q3R1.host", msgs[2])      // uid-3: staged in tmp/ only
	other := filepath.Join(t.TempDir(), "old") // uid-5: a Maildir since moved away
	pend := []uidstore.Pending{
		{UID: "uid-1", Dir: f.dir, Name: "1.M1P1Q1R1.host"},
		{UID: "uid-2", Dir: f.dir, Name: "1.M1P1Q2R1.host"},
		{UID: "uid-3", Dir: f.dir, Name: "1.M1P1Q3R1.host"},
		{UID: "uid-4", Dir: f.dir, Name: "1.M1P1Q4R1.host"}, // nowhere: never published
		{UID: "uid-5", Dir: other, Name: "1.M1P1Q5R1.host"},
	}
	if err := f.store.Pend(key, pend); err != nil {
		t.Fatal(err)
	}
	st, err := f.poll()
	if err != nil {
		t.Fatal(err)
	}
	if st.Recovered != 2 || st.New != 4 || st.Delivered != 4 || st.Deleted != 6 {
		t.Errorf("stats %+v, want 2 recovered, 4 new and delivered, 6 deleted", st)
	}
	if ps, _ := f.store.Pending(key); len(ps) != 0 {
		t.Errorf("pending records left: %+v", ps)
	}
	if n := f.srv.Count("RETR"); n != 4 {
		t.Errorf("%d RETR, want 4 (uid-3 to uid-6)", n)
	}
	// Every message once: uid-2 in cur/, the rest in new/.
	os.Rename(filepath.Join(f.dir, "cur/1.M1P1Q2R1.host:2,S"), filepath.Join(f.dir, "new/1.M1P1Q2R1.host"))
	f.assertDelivered(msgs)
}

// pendingChecker wraps a Maildir and checks, as each message is
// published, that its file name is already recorded as pending.
type pendingChecker struct {
	*deliver.Maildir
	t     *testing.T
	store *uidstore.Store
	key   uidstore.Key

	mu        sync.Mutex
	published int
}

func (p *pendingChecker) Stage(ctx context.Context, r io.Reader, env deliver.Envelope) (deliver.Staged, error) {
	st, err := p.Maildir.Stage(ctx, r, env)
	if err != nil {
		return nil, err
	}
	return &checkedStage{Staged: st, p: p}, nil
}

type checkedStage struct {
	deliver.Staged
	p *pendingChecker
}

func (c *checkedStage) Name() string { return c.Staged.(deliver.Named).Name() }

func (c *checkedStage) Publish(ctx context.Context) error {
	ps, err := c.p.store.Pending(c.p.key)
	if err != nil {
		c.p.t.Error(err)
	}
	found := false
	for _, p := range ps {
		found = found || (p.Name == c.Name() && p.Dir == c.p.Dir())
	}
	if !found {
		c.p.t.Errorf("%s published before it was recorded as pending", c.Name())
	}
	c.p.mu.Lock()
	c.p.published++
	c.p.mu.Unlock()
	return c.Staged.Publish(ctx)
}

func TestPollPendsBeforePublish(t *testing.T) {
	for _, pipelining := range []bool{false, true} {
		msgs := testMessages(300)
		f := newFixture(t, pop3test.Config{Pipelining: pipelining}, msgs)
		pc := &pendingChecker{Maildir: f.md, t: t, store: f.store, key: f.acct.Key()}
		st, err := Poll(context.Background(), f.acct, f.store, pc, nil)
		if err != nil || st.Delivered != 300 || pc.published != 300 {
			t.Fatalf("pipelining %v: %+v, %v, %d published", pipelining, st, err, pc.published)
		}
		if ps, _ := f.store.Pending(f.acct.Key()); len(ps) != 0 {
			t.Errorf("pending records left after a clean poll: %d", len(ps))
		}
		f.assertDelivered(msgs)
	}
}

// TestPollStateUnwritable: if pending records cannot be written, nothing
// is published or deleted, and the next poll delivers everything once.
func TestPollStateUnwritable(t *testing.T) {
	msgs := testMessages(20)
	f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
	path := f.store.Path()
	breaker := &storeBreaker{Maildir: f.md, store: f.store}
	_, err := Poll(context.Background(), f.acct, f.store, breaker, nil)
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindInternal {
		t.Fatalf("got %v, want an internal error", err)
	}
	if n := len(f.srv.Messages()); n != 20 {
		t.Fatalf("%d messages left on the server, want 20", n)
	}
	if got := f.delivered(); len(got) != 0 {
		t.Fatalf("%d messages published without a pending record", len(got))
	}
	store, err := uidstore.Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	f.store = store
	// The server may still hold the mailbox for the broken session.
	if st, err := f.pollAfterFault(f.md); err != nil || st.Delivered != 20 {
		t.Fatalf("second poll: %+v, %v", st, err)
	}
	f.assertDelivered(msgs)
}

// storeBreaker closes the store when the first message is staged, so
// that every write to it fails from then on.
type storeBreaker struct {
	*deliver.Maildir
	store *uidstore.Store
	once  sync.Once
}

func (b *storeBreaker) Stage(ctx context.Context, r io.Reader, env deliver.Envelope) (deliver.Staged, error) {
	b.once.Do(func() { b.store.Close() })
	return b.Maildir.Stage(ctx, r, env)
}

// eachDurable is a Maildir that says each Publish is final
// (deliver.EachDurable), as the Gmail target does, and checks, as each
// message is published, that every message published before it in the
// poll is already recorded as delivered: a crash leaves unknown only the
// message being published, never the rest of its batch.
type eachDurable struct {
	*deliver.Maildir
	t     *testing.T
	store *uidstore.Store
	key   uidstore.Key

	mu        sync.Mutex
	published int
}

func (e *eachDurable) EachDurable() bool { return true }

func (e *eachDurable) Stage(ctx context.Context, r io.Reader, env deliver.Envelope) (deliver.Staged, error) {
	st, err := e.Maildir.Stage(ctx, r, env)
	if err != nil {
		return nil, err
	}
	return &eachDurableStage{Staged: st, e: e}, nil
}

type eachDurableStage struct {
	deliver.Staged
	e *eachDurable
}

func (s *eachDurableStage) Name() string { return s.Staged.(deliver.Named).Name() }

func (s *eachDurableStage) Publish(ctx context.Context) error {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	n, err := s.e.store.Count(s.e.key)
	if err != nil {
		s.e.t.Error(err)
	}
	if n != s.e.published {
		s.e.t.Errorf("publishing message %d: %d recorded as delivered, want %d", s.e.published+1, n, s.e.published)
	}
	s.e.published++
	return s.Staged.Publish(ctx)
}

// TestPollRecordsEachDurable: for a target whose every Publish is final,
// each UID is recorded as soon as its message is published, not once per
// batch; the poll delivers everything once and leaves nothing pending.
func TestPollRecordsEachDurable(t *testing.T) {
	msgs := testMessages(150) // three batches
	f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
	e := &eachDurable{Maildir: f.md, t: t, store: f.store, key: f.acct.Key()}
	st, err := Poll(context.Background(), f.acct, f.store, e, nil)
	if err != nil || st.Delivered != 150 || e.published != 150 {
		t.Fatalf("%+v, %v, %d published", st, err, e.published)
	}
	if ps, _ := f.store.Pending(f.acct.Key()); len(ps) != 0 {
		t.Errorf("pending records left after a clean poll: %d", len(ps))
	}
	if n, _ := f.store.Count(f.acct.Key()); n != 150 {
		t.Errorf("%d UIDs recorded, want 150", n)
	}
	f.assertDelivered(msgs)
}
