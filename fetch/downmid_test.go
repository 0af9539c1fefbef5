package fetch

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// midDownTarget takes the first after messages published, then goes
// down (deliver.Error.Down) in the middle of a batch, as the IMAP target
// does when its session drops and the login is refused on the reconnect.
type midDownTarget struct {
	remoteTarget
	after int
}

type midDownStaged struct {
	remoteStaged
	d *midDownTarget
}

func (d *midDownTarget) Stage(ctx context.Context, rd io.Reader, env deliver.Envelope) (deliver.Staged, error) {
	st, err := d.remoteTarget.Stage(ctx, rd, env)
	if err != nil {
		return nil, err
	}
	return &midDownStaged{*st.(*remoteStaged), d}, nil
}

func (s *midDownStaged) Publish(ctx context.Context) error {
	s.d.mu.Lock()
	n := len(s.d.published)
	s.d.mu.Unlock()
	if n >= s.d.after {
		return &deliver.Error{Target: "imap", Down: true, Err: errors.New("login refused on the reconnect")}
	}
	return s.remoteStaged.Publish(ctx)
}

// TestPollTargetDownMidBatch: a target that goes down after some
// messages of a batch were published keeps those (committed, deleted
// at the next poll), leaves no pending record for the messages never
// sent, and the next poll delivers the rest: each message once.
func TestPollTargetDownMidBatch(t *testing.T) {
	const n, after = 20, 11 // batches of 8: down in the second
	f := newFixture(t, pop3test.Config{Pipelining: true}, testMessages(n))
	tune := tuning{window: 64, syncers: 4, queue: 64, batch: 8, batchWait: 50 * time.Millisecond}
	d := &midDownTarget{after: after}
	st, err := Poll(context.Background(), f.acct, f.store, d, &Options{tune: &tune})
	var de *deliver.Error
	if !errors.As(err, &de) || !de.Down {
		t.Fatalf("Poll: %+v, %v; want the target's error", st, err)
	}
	if st.Delivered != after {
		t.Errorf("first poll: %d delivered, want %d", st.Delivered, after)
	}
	pending, err := f.store.Pending(f.acct.Key())
	if err != nil || len(pending) != 0 {
		t.Errorf("pending records %v, %v; want none", pending, err)
	}
	r := &remoteTarget{}
	st, err = Poll(context.Background(), f.acct, f.store, r, &Options{tune: &tune})
	if err != nil {
		t.Fatalf("second poll: %v", err)
	}
	all := append(slices.Clone(d.published), r.published...)
	slices.Sort(all)
	want := make([]int, n)
	for i := range want {
		want[i] = i + 1
	}
	if !slices.Equal(all, want) {
		t.Errorf("messages published over both polls %v, want each of 1..%d once", all, n)
	}
	if left := len(f.srv.Messages()); left != 0 {
		t.Errorf("%d messages left on the server after the second poll, want 0", left)
	}
}
