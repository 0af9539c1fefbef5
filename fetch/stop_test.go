package fetch

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// stopAt is a Deliverer that closes stop while it stages its nth message.
type stopAt struct {
	deliver.Deliverer
	nth  int
	stop chan struct{}

	mu sync.Mutex
	n  int
}

func (s *stopAt) Stage(ctx context.Context, r io.Reader, env deliver.Envelope) (deliver.Staged, error) {
	s.mu.Lock()
	s.n++
	if s.n == s.nth {
		close(s.stop)
		time.Sleep(20 * time.Millisecond) // let the stop be seen mid-message
	}
	s.mu.Unlock()
	return s.Deliverer.Stage(ctx, r, env)
}

// pollUnlocked polls, waiting while the server still holds the mailbox
// for a connection the last poll closed without QUIT.
func (f *fixture) pollUnlocked() (Stats, error) {
	f.t.Helper()
	for i := 0; ; i++ {
		st, err := f.poll()
		if kindOf(err) != KindLocked || i == 100 {
			return st, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPollStop stops polls part-way and checks that each ends cleanly:
// nothing is lost, what was delivered is recorded, and a second poll
// fetches exactly the rest.
func TestPollStop(t *testing.T) {
	const total = 40
	for _, tc := range []struct {
		name       string
		pipelining bool
		nth        int // the message during which the stop comes
		// wantStopped: the poll ended with new mail left; otherwise it
		// finished, DELEs and QUIT included.
		wantStopped bool
	}{
		{"pipelined, in message 10", true, 10, true},
		{"one at a time, in message 5", false, 5, true},
		{"pipelined, in the last message", true, total, false},
		{"one at a time, in the last message", false, total, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := testMessages(total)
			stop := make(chan struct{})
			f := newFixture(t, pop3test.Config{Pipelining: tc.pipelining}, msgs)
			tune := tuning{window: 64, syncers: 2, queue: 4, batch: 8, batchWait: time.Millisecond}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			d := &stopAt{Deliverer: f.md, nth: tc.nth, stop: stop}
			st, err := Poll(ctx, f.acct, f.store, d, &Options{Stop: stop, tune: &tune})
			if err != nil {
				t.Fatalf("stopped poll failed: %v", err)
			}
			got := len(f.delivered())
			if st.Stopped != tc.wantStopped {
				t.Fatalf("Stopped = %v, want %v (stats %+v)", st.Stopped, tc.wantStopped, st)
			}
			if got != st.Delivered {
				t.Fatalf("%d in the Maildir, %d counted delivered", got, st.Delivered)
			}
			recorded, err := f.store.Count(f.acct.Key())
			if err != nil || recorded != got {
				t.Fatalf("store holds %d UIDs (%v), Maildir %d", recorded, err, got)
			}
			if tc.wantStopped {
				if got != tc.nth {
					t.Errorf("delivered %d, want the %d staged before the stop", got, tc.nth)
				}
				if n := len(f.srv.Messages()); n != total || st.Deleted != 0 {
					t.Errorf("server holds %d, deleted %d: without QUIT nothing is deleted", n, st.Deleted)
				}
			} else if got != total || st.Deleted != total || len(f.srv.Messages()) != 0 {
				t.Errorf("delivered %d, deleted %d, left %d: the session should have finished",
					got, st.Deleted, len(f.srv.Messages()))
			}

			retrs := f.srv.Count("RETR")
			st2, err := f.pollUnlocked()
			if err != nil {
				t.Fatal(err)
			}
			if n := f.srv.Count("RETR") - retrs; n != total-got {
				t.Errorf("the next poll fetched %d, want %d", n, total-got)
			}
			if st2.Stopped || len(f.srv.Messages()) != 0 {
				t.Errorf("next poll: %+v, server holds %d", st2, len(f.srv.Messages()))
			}
			f.assertDelivered(msgs)
		})
	}
}

// TestPollStopBeforeStart: a poll asked to stop before it starts does
// nothing.
func TestPollStopBeforeStart(t *testing.T) {
	f := newFixture(t, pop3test.Config{Pipelining: true}, testMessages(3))
	stop := make(chan struct{})
	close(stop)
	st, err := Poll(context.Background(), f.acct, f.store, f.md, &Options{Stop: stop})
	if kindOf(err) != KindCanceled || st.Delivered != 0 {
		t.Errorf("got %+v, %v", st, err)
	}
	if f.srv.Count("RETR") != 0 || f.srv.Count("DELE") != 0 || len(f.srv.Messages()) != 3 {
		t.Errorf("the server saw RETR %d, DELE %d", f.srv.Count("RETR"), f.srv.Count("DELE"))
	}
}

// TestPollStopWhileWaiting: a stop while the client waits for a slow
// server ends the poll at once, not when the server answers.
func TestPollStopWhileWaiting(t *testing.T) {
	msgs := testMessages(5)
	f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
	f.srv.SetFaults(pop3test.Fault{Command: "RETR", Nth: 3, Action: pop3test.Stall, Delay: 10 * time.Second})
	stop := make(chan struct{})
	time.AfterFunc(300*time.Millisecond, func() { close(stop) })
	start := time.Now()
	st, err := Poll(context.Background(), f.acct, f.store, f.md, &Options{Stop: stop})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the stop took %v", d)
	}
	if !st.Stopped || st.Delivered != 2 || len(f.delivered()) != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestPollLoginDelay: the server's LOGIN-DELAY reaches the stats.
func TestPollLoginDelay(t *testing.T) {
	f := newFixture(t, pop3test.Config{LoginDelay: 900}, nil)
	st, err := f.poll()
	if err != nil {
		t.Fatal(err)
	}
	if st.LoginDelay != 15*time.Minute {
		t.Errorf("LoginDelay = %v", st.LoginDelay)
	}
}

// TestPollStopDuringLogin: a stop before the listing is in ends the poll
// at once: nothing is in progress that should finish.
func TestPollStopDuringLogin(t *testing.T) {
	f := newFixture(t, pop3test.Config{}, testMessages(3))
	f.srv.SetFaults(pop3test.Fault{Command: "PASS", Action: pop3test.Stall, Delay: 10 * time.Second})
	stop := make(chan struct{})
	time.AfterFunc(200*time.Millisecond, func() { close(stop) })
	start := time.Now()
	_, err := Poll(context.Background(), f.acct, f.store, f.md, &Options{Stop: stop})
	if kindOf(err) != KindCanceled {
		t.Errorf("got %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the stop took %v", d)
	}
	if len(f.srv.Messages()) != 3 {
		t.Error("messages were deleted")
	}

	// Check stops the same way.
	stop = make(chan struct{})
	time.AfterFunc(200*time.Millisecond, func() { close(stop) })
	start = time.Now()
	if _, err := Check(context.Background(), f.acct, f.store, &Options{Stop: stop}); kindOf(err) != KindCanceled {
		t.Errorf("Check: got %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stopping Check took %v", d)
	}
}
