package schedule

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
	"github.com/popfetch/popfetch/uidstore"
)

// These tests run the Scheduler's loop on the real clock with short
// intervals; they assert what must always hold and what must happen
// eventually, with bounded waits, never exact timings.

// tracker records the polls of fake jobs.
type tracker struct {
	mu        sync.Mutex
	polls     map[string]int
	running   int
	perServer map[string]int
	mailboxes map[string]bool
	maxRun    int
	maxServer int
	violation string
}

func newTracker() *tracker {
	return &tracker{polls: map[string]int{}, perServer: map[string]int{}, mailboxes: map[string]bool{}}
}

// job returns a job whose Poll takes d (or until stop or ctx) and records
// what ran at once.
func (tr *tracker) job(name, server string, interval, d time.Duration) Job {
	j := job(name, server, interval)
	j.Poll = func(ctx context.Context, store *uidstore.Store, stop <-chan struct{}) (fetch.Stats, error) {
		if store == nil {
			return fetch.Stats{}, errors.New("no store")
		}
		tr.mu.Lock()
		tr.running++
		tr.perServer[j.Server]++
		if tr.mailboxes[j.Mailbox] {
			tr.violation = "mailbox " + j.Mailbox + " polled twice at once"
		}
		tr.mailboxes[j.Mailbox] = true
		tr.maxRun = max(tr.maxRun, tr.running)
		tr.maxServer = max(tr.maxServer, tr.perServer[j.Server])
		tr.mu.Unlock()
		select {
		case <-time.After(d):
		case <-stop:
		case <-ctx.Done():
		}
		tr.mu.Lock()
		tr.running--
		tr.perServer[j.Server]--
		delete(tr.mailboxes, j.Mailbox)
		tr.polls[name]++
		tr.mu.Unlock()
		return fetch.Stats{}, nil
	}
	return j
}

func (tr *tracker) count(name string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.polls[name]
}

// eventually waits up to 10 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func storeOpener(t *testing.T) (string, func(context.Context) (*uidstore.Store, error)) {
	path := filepath.Join(t.TempDir(), "uids.db")
	return path, func(context.Context) (*uidstore.Store, error) {
		return uidstore.Open(path, 100*time.Millisecond)
	}
}

// runScheduler runs s until the test ends, and returns a function that
// stops it gracefully and returns Run's error.
func runScheduler(t *testing.T, s *Scheduler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopCh := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, stopCh) }()
	var once sync.Once
	stopFn := func() error {
		once.Do(func() { close(stopCh) })
		select {
		case err := <-done:
			done <- err
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10 s of stop")
			return nil
		}
	}
	t.Cleanup(func() { stopFn(); cancel() })
	return stopFn
}

func TestSchedulerPollsConcurrentlyWithinLimits(t *testing.T) {
	tr := newTracker()
	_, open := storeOpener(t)
	var jobs []Job
	for i := range 12 {
		jobs = append(jobs, tr.job(fmt.Sprint("acct", i), fmt.Sprint("server", i%3, ":110"), 10*time.Millisecond, 15*time.Millisecond))
	}
	s := New(Config{MaxPolls: 4, MaxPerServer: 2, OpenStore: open, Jitter: noJitter}, jobs)
	stop := runScheduler(t, s)
	eventually(t, "every account polled 5 times", func() bool {
		for _, j := range jobs {
			if tr.count(j.Name) < 5 {
				return false
			}
		}
		return true
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.violation != "" || tr.maxRun > 4 || tr.maxServer > 2 {
		t.Errorf("limits broken: %s, %d at once, %d on one server", tr.violation, tr.maxRun, tr.maxServer)
	}
	if tr.maxRun < 2 {
		t.Errorf("never more than %d poll at once", tr.maxRun)
	}
	for _, st := range s.Status() {
		if st.Polls < 5 || st.LastResult != "ok" || st.Running {
			t.Errorf("status %+v", st)
		}
	}
}

// TestSchedulerGracefulStop: stop reaches the running polls, no new poll
// starts, and Run returns once they have ended.
func TestSchedulerGracefulStop(t *testing.T) {
	_, open := storeOpener(t)
	started := make(chan struct{}, 10)
	var sawStop sync.WaitGroup
	sawStop.Add(2)
	mk := func(name string) Job {
		j := job(name, name+":1", time.Hour)
		j.Poll = func(ctx context.Context, _ *uidstore.Store, stop <-chan struct{}) (fetch.Stats, error) {
			started <- struct{}{}
			<-stop
			sawStop.Done()
			time.Sleep(50 * time.Millisecond) // finishing the message in progress
			return fetch.Stats{Stopped: true}, nil
		}
		return j
	}
	s := New(Config{OpenStore: open, Jitter: noJitter}, []Job{mk("a"), mk("b")})
	stop := runScheduler(t, s)
	<-started
	<-started
	begin := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	sawStop.Wait()
	if d := time.Since(begin); d < 50*time.Millisecond {
		t.Errorf("Run returned after %v, before the polls ended", d)
	}
	if len(started) != 0 {
		t.Error("a poll started after stop")
	}
}

// TestSchedulerCancel: cancelling the context aborts the polls, and Run
// returns the context's error.
func TestSchedulerCancel(t *testing.T) {
	_, open := storeOpener(t)
	started := make(chan struct{})
	j := job("a", "a:1", time.Hour)
	j.Poll = func(ctx context.Context, _ *uidstore.Store, _ <-chan struct{}) (fetch.Stats, error) {
		close(started)
		<-ctx.Done()
		return fetch.Stats{}, &fetch.Error{Account: "a", Kind: fetch.KindCanceled, Err: ctx.Err()}
	}
	s := New(Config{OpenStore: open, Jitter: noJitter}, []Job{j})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx, nil) }()
	<-started
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if st := s.Status()[0]; st.LastResult != "interrupted" || st.Failures != 0 {
		t.Errorf("status %+v", st)
	}
}

// TestSchedulerSharesTheStore: between poll cycles the store is closed,
// so another process (here, the test) can open it; while the test holds
// it no poll runs; polls go on once it is released.
func TestSchedulerSharesTheStore(t *testing.T) {
	tr := newTracker()
	path, open := storeOpener(t)
	s := New(Config{OpenStore: open, Jitter: noJitter},
		[]Job{tr.job("a", "a:1", 200*time.Millisecond, 10*time.Millisecond)})
	stop := runScheduler(t, s)
	eventually(t, "a first poll", func() bool { return tr.count("a") >= 1 })
	other, err := uidstore.Open(path, 5*time.Second)
	if err != nil {
		t.Fatalf("a second process could not get the store between polls: %v", err)
	}
	n := tr.count("a")
	time.Sleep(600 * time.Millisecond) // three intervals
	if got := tr.count("a"); got != n {
		t.Errorf("%d polls ran while another process held the store", got-n)
	}
	other.Close()
	eventually(t, "polls to resume", func() bool { return tr.count("a") > n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestSchedulerKeepsTheStoreForShortGaps: when the next poll is due
// sooner than the store could be opened again, the store stays open
// (until StoreHold), instead of an open and a close for every poll.
func TestSchedulerKeepsTheStoreForShortGaps(t *testing.T) {
	tr := newTracker()
	_, open := storeOpener(t)
	var opens atomic.Int32
	counted := func(ctx context.Context) (*uidstore.Store, error) {
		opens.Add(1)
		return open(ctx)
	}
	s := New(Config{OpenStore: counted, Jitter: noJitter, StoreHold: time.Hour},
		[]Job{tr.job("a", "a:1", 30*time.Millisecond, time.Millisecond)})
	stop := runScheduler(t, s)
	eventually(t, "10 polls", func() bool { return tr.count("a") >= 10 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := opens.Load(); n > 2 {
		t.Errorf("the store was opened %d times for %d polls 30 ms apart", n, tr.count("a"))
	}
}

// TestSchedulerStoreHold: a cycle that keeps the store busy past
// StoreHold is ended, so that a waiting process gets in even while polls
// are always due.
func TestSchedulerStoreHold(t *testing.T) {
	tr := newTracker()
	path, open := storeOpener(t)
	var jobs []Job
	for i := range 4 {
		jobs = append(jobs, tr.job(fmt.Sprint("a", i), fmt.Sprint("s", i, ":1"), time.Millisecond, 20*time.Millisecond))
	}
	s := New(Config{OpenStore: open, Jitter: noJitter, StoreHold: 300 * time.Millisecond}, jobs)
	stop := runScheduler(t, s)
	eventually(t, "polls", func() bool { return tr.count("a0") >= 2 })
	other, err := uidstore.Open(path, 5*time.Second)
	if err != nil {
		t.Fatalf("the store was never released: %v", err)
	}
	other.Close()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestSchedulerUpdateAndPollNow(t *testing.T) {
	tr := newTracker()
	_, open := storeOpener(t)
	a := tr.job("a", "a:1", time.Hour, time.Millisecond)
	s := New(Config{OpenStore: open, Jitter: noJitter}, []Job{a})
	stop := runScheduler(t, s)
	eventually(t, "the first poll", func() bool { return tr.count("a") == 1 })
	s.PollNow()
	eventually(t, "the poll asked for", func() bool { return tr.count("a") == 2 })
	s.Update([]Job{a, tr.job("b", "b:1", time.Hour, time.Millisecond)})
	eventually(t, "the added account's poll", func() bool { return tr.count("b") == 1 })
	s.Update([]Job{tr.job("b", "b:1", time.Hour, time.Millisecond)})
	if st := s.Status(); len(st) != 1 || st[0].Name != "b" {
		t.Errorf("status after removing a: %+v", st)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Error(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if tr.count("a") != 2 || tr.count("b") != 1 {
		t.Errorf("polls: %v", tr.polls)
	}
}

// TestSchedulerPanic: a poll that panics fails as an internal error; the
// Scheduler goes on.
func TestSchedulerPanic(t *testing.T) {
	_, open := storeOpener(t)
	var mu sync.Mutex
	n := 0
	j := job("a", "a:1", 10*time.Millisecond)
	j.Poll = func(context.Context, *uidstore.Store, <-chan struct{}) (fetch.Stats, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n == 1 {
			panic("bug")
		}
		return fetch.Stats{}, nil
	}
	s := New(Config{OpenStore: open, Jitter: noJitter}, []Job{j})
	stop := runScheduler(t, s)
	eventually(t, "the failure", func() bool { return s.Status()[0].LastResult == "internal error" })
	s.PollNow()
	eventually(t, "a poll after the panic", func() bool { return s.Status()[0].LastResult == "ok" })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestSchedulerLongPollDoesNotStallOthers: a long fetch keeps the store
// busy past StoreHold; the other accounts go on polling meanwhile.
func TestSchedulerLongPollDoesNotStallOthers(t *testing.T) {
	tr := newTracker()
	_, open := storeOpener(t)
	long := tr.job("long", "a:1", time.Hour, 1500*time.Millisecond)
	quick := tr.job("quick", "b:1", 10*time.Millisecond, time.Millisecond)
	s := New(Config{OpenStore: open, Jitter: noJitter, StoreHold: 200 * time.Millisecond}, []Job{long, quick})
	stop := runScheduler(t, s)
	eventually(t, "the long poll to start", func() bool { return s.Status()[0].Running })
	time.Sleep(500 * time.Millisecond) // past StoreHold and the long poll's own StoreHold
	n := tr.count("quick")
	eventually(t, "quick polls during the long one", func() bool { return tr.count("quick") >= n+5 })
	if s.Status()[0].Running == false {
		t.Error("the long poll ended before the quick ones went on: the test proves nothing")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestSchedulerLoginDelay: a server that advertises LOGIN-DELAY and refuses
// a login sooner. The daemon's scheduler polls no faster than it allows,
// even with a shorter interval and when asked to poll at once, and its
// status says why the next poll waits.
func TestSchedulerLoginDelay(t *testing.T) {
	srv, err := pop3test.NewServer(pop3test.Config{User: "alice", Password: "wonderland", LoginDelay: 1,
		Quirks: pop3test.Quirks{EnforceLoginDelay: true}},
		pop3test.Message{UID: "1", Data: []byte("Subject: a\n\nx\n")}, pop3test.Message{UID: "2", Data: []byte("Subject: b\n\ny\n")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Addr())
	portNum, _ := strconv.Atoi(port)
	acct := &fetch.Account{Name: "slow", Server: host, Port: portNum, TLS: fetch.TLSNone, AllowInsecureAuth: true,
		User: "alice", Password: func(context.Context) (string, error) { return "wonderland", nil },
		Auth: fetch.AuthAuto, Timeout: 5 * time.Second, Keep: true}
	md, err := deliver.NewMaildir(filepath.Join(t.TempDir(), "Maildir"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var polls int
	var failures []error
	_, open := storeOpener(t)
	j := job("slow", srv.Addr(), 20*time.Millisecond)
	j.Poll = func(ctx context.Context, store *uidstore.Store, stop <-chan struct{}) (fetch.Stats, error) {
		st, err := fetch.Poll(ctx, acct, store, md, &fetch.Options{Stop: stop})
		mu.Lock()
		defer mu.Unlock()
		polls++
		if err != nil {
			failures = append(failures, err)
		}
		return st, err
	}
	s := New(Config{OpenStore: open, Jitter: noJitter}, []Job{j})
	stop := runScheduler(t, s)
	eventually(t, "the first poll", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return polls >= 1
	})
	s.PollNow()
	time.Sleep(2500 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Errorf("polled sooner than LOGIN-DELAY allows: %v", failures)
	}
	if polls < 2 || polls > 4 {
		t.Errorf("%d polls in about 2.5 s with LOGIN-DELAY 1 (interval 20 ms)", polls)
	}
	if st := s.Status(); len(st) != 1 || st[0].LoginDelay != time.Second {
		t.Errorf("status: %+v", st)
	}
}

// authErr is an error only a new authorization cures, as
// *oauth2token.Error says of a refused refresh token.
type authErr struct{}

func (authErr) Error() string   { return `invalid_grant; run "popfetch auth a"` }
func (authErr) NeedsAuth() bool { return true }

// TestSchedulerStopsJobThatNeedsAuth: a job whose refresh token is refused
// stops polling, the other goes on; a wake (PollNow) leaves it stopped;
// Resume and Update start it again.
func TestSchedulerStopsJobThatNeedsAuth(t *testing.T) {
	_, open := storeOpener(t)
	var mu sync.Mutex
	polls := map[string]int{}
	refused := true
	mk := func(name string) Job {
		j := job(name, "server:110", 10*time.Millisecond)
		j.Poll = func(context.Context, *uidstore.Store, <-chan struct{}) (fetch.Stats, error) {
			mu.Lock()
			defer mu.Unlock()
			polls[name]++
			if name == "a" && refused {
				return fetch.Stats{}, &fetch.Error{Account: name, Kind: fetch.KindAuth, Err: fmt.Errorf("oauth2: %w", authErr{})}
			}
			return fetch.Stats{}, nil
		}
		return j
	}
	count := func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		return polls[name]
	}
	s := New(Config{OpenStore: open, Jitter: noJitter}, []Job{mk("a"), mk("b")})
	runScheduler(t, s)
	eventually(t, "b polled 10 times", func() bool { return count("b") >= 10 })
	s.PollNow()
	eventually(t, "b polled again", func() bool { return count("b") >= 12 })
	if n := count("a"); n != 1 {
		t.Fatalf("the stopped job polled %d times", n)
	}
	st := s.Status()[0]
	if !st.NeedsAuth || !st.Next.IsZero() || st.LastResult != "authentication failed" || st.Failures != 1 {
		t.Fatalf("status %+v", st)
	}
	mu.Lock()
	refused = false
	mu.Unlock()
	s.Resume("a")
	eventually(t, "a polled after Resume", func() bool { return count("a") >= 3 })
	if st := s.Status()[0]; st.NeedsAuth || st.LastResult != "ok" {
		t.Fatalf("after Resume: %+v", st)
	}
	// Stopped again; a reload with the same configuration resumes it.
	mu.Lock()
	refused = true
	mu.Unlock()
	eventually(t, "a stopped again", func() bool { return s.Status()[0].NeedsAuth })
	n := count("a")
	s.Update([]Job{mk("a"), mk("b")})
	eventually(t, "a polled after Update", func() bool { return count("a") > n })
}
