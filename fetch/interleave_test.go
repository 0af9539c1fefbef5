package fetch

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// flakyMaildir fails the Publish of every message after the first
// `after`, with a temporary delivery error, from the sequencer.
type flakyMaildir struct {
	*deliver.Maildir
	after int64
	n     atomic.Int64
}

func (f *flakyMaildir) Stage(ctx context.Context, r io.Reader, env deliver.Envelope) (deliver.Staged, error) {
	st, err := f.Maildir.Stage(ctx, r, env)
	if err != nil {
		return nil, err
	}
	return &flakyStaged{Staged: st, fail: f.n.Add(1) > f.after}, nil
}

type flakyStaged struct {
	deliver.Staged
	fail bool
}

func (s *flakyStaged) Publish(ctx context.Context) error {
	if s.fail {
		s.Staged.Abort()
		return &deliver.Error{Target: "flaky", Temporary: true, Err: errors.New("injected")}
	}
	return s.Staged.Publish(ctx)
}

// Name passes on the staged file's name, for the pending records.
func (s *flakyStaged) Name() string {
	if n, ok := s.Staged.(deliver.Named); ok {
		return n.Name()
	}
	return ""
}

// TestTransferStopAndFailInterleaved runs the transfer's stop and failure
// paths against each other, with its goroutines interleaved (a small
// window, several syncers, tiny batches): a stop asked at a random
// moment, the connection cut in a random message, deliveries failing
// from a random message on, the context cancelled at a random moment, in
// random combinations. Under -race (make test) it checks the state the
// reader, writer, sequencer and syncers share; after each run clean
// polls must leave every message delivered exactly once.
func TestTransferStopAndFailInterleaved(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	tune := tuning{window: 8, syncers: 3, queue: 2, batch: 3, batchWait: time.Millisecond}
	for i := range 24 {
		msgs := faultMessages()
		f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
		var d deliver.Deliverer = f.md
		stop := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		what := rng.IntN(16)
		if what&1 != 0 {
			time.AfterFunc(time.Duration(rng.IntN(15))*time.Millisecond, func() { close(stop) })
		}
		if what&2 != 0 {
			f.srv.SetFaults(pop3test.Fault{Command: "RETR", Nth: 1 + rng.IntN(20), Action: pop3test.DropAfter, Bytes: rng.IntN(200)})
		}
		if what&4 != 0 {
			d = &flakyMaildir{Maildir: f.md, after: int64(rng.IntN(20))}
		}
		if what&8 != 0 {
			time.AfterFunc(time.Duration(rng.IntN(20))*time.Millisecond, cancel)
		}
		_, err := Poll(ctx, f.acct, f.store, d, &Options{Stop: stop, tune: &tune})
		cancel()
		t.Logf("run %d (stop %v, cut %v, flaky %v, cancel %v): %v", i, what&1 != 0, what&2 != 0, what&4 != 0, what&8 != 0, err)
		f.settle(msgs)
	}
}

// TestStopState: when a stop gives up the network side, and that it is
// given up exactly once, whoever asks.
func TestStopState(t *testing.T) {
	// Between messages: at once.
	s := &stopState{remaining: 3}
	if !s.request() || !s.isAbandoned() || s.startMessage() {
		t.Errorf("between messages: %+v", s)
	}
	// In a message: when it ends.
	s = &stopState{remaining: 3}
	s.startMessage()
	if s.request() {
		t.Error("abandoned in the middle of a message")
	}
	if left, abandon, abandoned := s.endMessage(); left != 2 || !abandon || !abandoned {
		t.Errorf("end of the message: %d, %v, %v", left, abandon, abandoned)
	}
	// After the last RETR reply: never (the session ends with QUIT).
	s = &stopState{remaining: 1}
	s.startMessage()
	if _, abandon, _ := s.endMessage(); abandon || s.request() || s.isAbandoned() {
		t.Error("abandoned with every reply in")
	}
	// After a failure: never.
	s = &stopState{remaining: 5}
	s.fail()
	if s.request() {
		t.Error("abandoned after a failure")
	}
	// Many goroutines asking at once: one abandons.
	s = &stopState{remaining: 100}
	var abandons atomic.Int64
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 50 {
				if s.request() {
					abandons.Add(1)
				}
				if s.startMessage() {
					if _, abandon, _ := s.endMessage(); abandon {
						abandons.Add(1)
					}
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
	if n := abandons.Load(); n != 1 {
		t.Errorf("abandoned %d times", n)
	}
}
