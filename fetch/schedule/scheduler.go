package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/uidstore"
)

// Job is one account as the Scheduler sees it.
type Job struct {
	// Name identifies the job; Update matches jobs by it.
	Name string
	// Mailbox identifies the mailbox (uidstore.Key.String()): two jobs
	// with one Mailbox never poll at once.
	Mailbox string
	// Server is the server's "host:port": at most MaxPerServer polls of
	// one Server run at once.
	Server string
	// Interval is the wait between the end of one poll and the start of
	// the next, before jitter and backoff.
	Interval time.Duration
	// Config changes when the job's configuration changes; Update then
	// forgets the job's failures and polls it at once.
	Config string
	// Poll polls the account once with the open UID store. stop asks it
	// to end early and cleanly (see Options.Stop); ctx aborts it.
	Poll func(ctx context.Context, store *uidstore.Store, stop <-chan struct{}) (fetch.Stats, error)
}

// JobStatus is what the Scheduler knows of a job, for "popfetch status".
type JobStatus struct {
	Name        string        `json:"name"`
	Server      string        `json:"server"`
	Running     bool          `json:"running"`
	LastStart   time.Time     `json:"last_start,omitzero"`
	LastEnd     time.Time     `json:"last_end,omitzero"`
	LastResult  string        `json:"last_result,omitempty"` // "ok", "interrupted", or the kind of failure
	LastError   string        `json:"last_error,omitempty"`
	LastFetched int           `json:"last_fetched"` // messages delivered by the last poll
	LastBytes   int64         `json:"last_bytes"`
	Fetched     int           `json:"fetched"` // messages delivered since the daemon started
	Bytes       int64         `json:"bytes"`
	Polls       int           `json:"polls"`
	Failures    int           `json:"failures"` // polls failed in a row
	Next        time.Time     `json:"next,omitzero"`
	Backoff     time.Duration `json:"backoff"` // the wait chosen after the last failure; 0 after a success
	// NeedsAuth is set when the job's last poll failed with an error
	// that only a new authorization cures (see Scheduler): the job does
	// not poll again until Resume, or Update (a reload).
	NeedsAuth bool `json:"needs_auth,omitempty"`
	// LoginDelay is the shortest time between logins the server asks for
	// (RFC 2449 LOGIN-DELAY); polls are never closer than that, even when
	// the interval is shorter or a poll is asked for at once.
	LoginDelay time.Duration `json:"login_delay,omitempty"`
}

// Config sets up a Scheduler. Zero values take the defaults.
type Config struct {
	// MaxPolls and MaxPerServer limit the polls at once, in all and on
	// one server. Zero sets them from the jobs' poll rate: enough that
	// every job is polled on time even if each poll takes a second, and
	// at least 4 in all and 2 on a server.
	MaxPolls     int
	MaxPerServer int
	MaxBackoff   time.Duration // the longest wait after failures (default 1h)
	// OpenStore opens the UID store. It should give up after a short
	// wait when another process holds it (uidstore.ErrLocked); the
	// Scheduler tries again.
	OpenStore func(ctx context.Context) (*uidstore.Store, error)
	// Log receives failures and changes of state. Nil discards.
	Log *slog.Logger
	// Jitter returns a random duration in [0, max]; nil means uniform.
	Jitter func(max time.Duration) time.Duration
	// StoreHold and StoreGap share the UID store with other popfetch
	// processes: once the store has been open for StoreHold no poll
	// starts until the running ones end and it is closed (unless one of
	// them has itself run for StoreHold), and it stays closed for
	// StoreGap (defaults 5s and 150ms).
	StoreHold, StoreGap time.Duration
	// Tick gathers the polls that fall due while the daemon is idle: the
	// loop wakes for them at the next multiple of Tick, not at each one's
	// due time. Every wake from idle costs the process more than the
	// poll's own work in the Go runtime and the kernel (threads woken,
	// the runtime's monitor spinning up); with a poll every 30 ms, a few
	// polls a wake halve that. Polls start up to Tick late. 0 means a
	// hundredth of the shortest interval, at least 100 ms and at most
	// 1 s (3 s for 5 minutes would be late enough to notice in a log).
	// A negative Tick wakes at each due time.
	Tick time.Duration
}

// Scheduler polls many accounts, each at its own interval, several at
// once within limits, with backoff after failures.
//
// A poll that fails with an error that has a method NeedsAuth() bool
// reporting true (an *oauth2token.Error for a refresh token the provider
// refused) stops its job: polling again would be refused the same way,
// and only the user can help ("popfetch auth"). The other jobs go on; the
// job polls again after Resume or Update.
//
// The UID store is opened when a poll is to start and closed when no poll
// runs, so that one-shot popfetch commands can use it between polls; see
// Config.StoreHold.
type Scheduler struct {
	cfg  Config
	log  *slog.Logger
	wake chan struct{}
	ping chan chan struct{}

	mu   sync.Mutex
	plan *plan
}

// NewScheduler returns a Scheduler for jobs; Run runs it.
func New(cfg Config, jobs []Job) *Scheduler {
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Hour
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func(max time.Duration) time.Duration { return rand.N(max + 1) }
	}
	if cfg.StoreHold <= 0 {
		cfg.StoreHold = 5 * time.Second
	}
	if cfg.StoreGap <= 0 {
		cfg.StoreGap = 150 * time.Millisecond
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{
		cfg:  cfg,
		log:  log,
		wake: make(chan struct{}, 1),
		ping: make(chan chan struct{}),
		plan: newPlan(cfg.MaxPolls, cfg.MaxPerServer, cfg.MaxBackoff, cfg.Jitter, log),
	}
	s.plan.update(jobs, time.Now())
	return s
}

// Update replaces the jobs (after the configuration was reloaded).
func (s *Scheduler) Update(jobs []Job) {
	s.mu.Lock()
	s.plan.update(jobs, time.Now())
	s.mu.Unlock()
	s.nudge()
}

// SetLimits changes the limits (after the configuration was reloaded):
// zero polls limits are set from the poll rate (see Config), a zero
// maxBackoff keeps the current one. Polls already running are not
// stopped.
func (s *Scheduler) SetLimits(maxPolls, maxPerServer int, maxBackoff time.Duration) {
	s.mu.Lock()
	s.plan.maxPolls = max(maxPolls, 0)
	s.plan.maxPerServer = max(maxPerServer, 0)
	s.plan.setLimits()
	if maxBackoff > 0 {
		s.plan.maxBackoff = maxBackoff
	}
	s.mu.Unlock()
	s.nudge()
}

// PollNow makes every job due at once.
func (s *Scheduler) PollNow() {
	s.mu.Lock()
	s.plan.pollNow(time.Now())
	s.mu.Unlock()
	s.nudge()
}

// Resume makes a job that stopped for a new authorization (see
// JobStatus.NeedsAuth) poll again at once, and reports whether it had
// stopped. It does nothing to a job that had not.
func (s *Scheduler) Resume(name string) bool {
	s.mu.Lock()
	resumed := s.plan.resume(name, time.Now())
	s.mu.Unlock()
	if resumed {
		s.nudge()
	}
	return resumed
}

func (s *Scheduler) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Status returns the state of every job, in the order of the
// configuration.
func (s *Scheduler) Status() []JobStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]JobStatus, len(s.plan.entries))
	for i, e := range s.plan.entries {
		out[i] = e.status
		if !e.running {
			out[i].Next = e.next
		}
	}
	return out
}

// Limits returns the limits in effect: polls at once in all, and on the
// server that allows the most.
func (s *Scheduler) Limits() (polls, perServer int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	perServer = s.plan.maxPerServer
	for _, n := range s.plan.serverLimit {
		perServer = max(perServer, n)
	}
	return s.plan.pollLimit, max(perServer, minAutoPerServer)
}

// Lateness returns how late the polls since New started.
func (s *Scheduler) Lateness() Lateness {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.plan.late
	l.Buckets = append([]uint64(nil), l.Buckets...)
	return l
}

// Ping returns once Run's loop has answered, proving that it is not stuck
// (for a watchdog), or the context's error.
func (s *Scheduler) Ping(ctx context.Context) error {
	reply := make(chan struct{})
	select {
	case s.ping <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-reply:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// result is the end of one poll.
type result struct {
	e   *entry
	st  fetch.Stats
	err error
}

// Run polls until stop is closed or ctx is cancelled. After stop, no poll
// starts, running polls are asked to end cleanly (Options.Stop), and Run
// returns nil once they have. Cancelling ctx aborts the running polls;
// Run then returns ctx's error once they have returned.
func (s *Scheduler) Run(ctx context.Context, stop <-chan struct{}) error {
	l := &runLoop{s: s, ctx: ctx, stop: stop,
		results: make(chan result, s.cfg.MaxPolls), opened: make(chan storeResult, 1)}
	done := ctx.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		if l.stopping || ctx.Err() != nil {
			if l.running == 0 && !l.opening {
				l.closeStore(now)
				if ctx.Err() != nil && !l.stopping {
					return ctx.Err()
				}
				return nil
			}
		} else {
			l.startDue(now)
		}
		timer.Reset(l.wait(now)) // since Go 1.23 a Reset timer never delivers a stale tick

		select {
		case <-timer.C:
		case <-s.wake:
		case reply := <-s.ping:
			close(reply)
		case <-l.stop:
			if !l.stopping {
				l.stopping = true
				l.stop = nil // a closed channel would make this loop spin
				s.log.Info("stopping: no new polls; waiting for the running ones to finish", "running", l.running)
			}
		case <-done:
			done = nil // as for stop
		case r := <-l.results:
			l.running--
			s.mu.Lock()
			s.plan.finish(r.e, r.st, r.err, time.Now())
			s.mu.Unlock()
		case o := <-l.opened:
			l.storeOpened(o)
		}
	}
}

// runLoop is the state of Run's loop: the UID store, which it opens
// when polls are due and closes between cycles, and the polls running.
type runLoop struct {
	s       *Scheduler
	ctx     context.Context
	stop    <-chan struct{}
	results chan result
	opened  chan storeResult

	store       *uidstore.Store
	storeSince  time.Time // when store was opened
	opening     bool
	reopenAt    time.Time // not before: the gap after closing, or the wait after a failure
	openFails   int
	stopping    bool
	running     int
	lockedShown bool
}

// closeStore closes the store, if open, and keeps it closed for StoreGap.
func (l *runLoop) closeStore(now time.Time) {
	if l.store == nil {
		return
	}
	if err := l.store.Close(); err != nil {
		l.s.log.Error("closing the UID store: " + err.Error())
	}
	l.store = nil
	l.reopenAt = now.Add(l.s.cfg.StoreGap)
}

// startDue starts the polls that are due, opening the store first, or
// closes the store between cycles.
func (l *runLoop) startDue(now time.Time) {
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	due := s.plan.hasDue(now)
	// A cycle that has held the store for StoreHold takes no new
	// polls, so that it ends soon and a one-shot popfetch can
	// get in; unless a poll has run that long itself (a big
	// fetch): the store stays busy until it ends anyway, and
	// the other accounts should not wait for it.
	oldest := s.plan.oldestStart()
	held := l.store != nil && now.Sub(l.storeSince) >= s.cfg.StoreHold &&
		(oldest.IsZero() || now.Sub(oldest) < s.cfg.StoreHold)
	if l.store != nil && l.running == 0 && (held || !due && !s.plan.dueWithin(now, s.cfg.StoreGap)) {
		// Between poll cycles the store is closed, so that a
		// one-shot popfetch can get in; but not for a gap shorter
		// than StoreGap, after which it could not be opened again
		// in time: polls would start late, and a daemon of
		// thousands of accounts, a poll every few milliseconds,
		// would open and close it for every poll. StoreHold ends
		// such a cycle.
		l.closeStore(now)
	}
	switch {
	case due && l.store == nil && !l.opening && !now.Before(l.reopenAt):
		l.opening = true
		go func() {
			st, err := s.cfg.OpenStore(l.ctx)
			l.opened <- storeResult{st, err}
		}()
	case due && l.store != nil && !held:
		for _, e := range s.plan.start(now) {
			l.running++
			go s.runPoll(l.ctx, e, e.job, l.store, l.stop, l.results)
		}
	}
}

// wait returns how long the loop may sleep: until the next poll is due,
// or the store may be opened again.
func (l *runLoop) wait(now time.Time) time.Duration {
	var wakeAt time.Time
	tick := l.s.cfg.Tick
	l.s.mu.Lock()
	next, ok := l.s.plan.wake(now)
	if tick == 0 {
		tick = l.s.plan.tick
	}
	l.s.mu.Unlock()
	if ok {
		wakeAt = next
		if tick > 0 {
			if t := next.Truncate(tick); t.Before(next) {
				wakeAt = t.Add(tick)
			}
		}
	}
	if l.store == nil && !l.opening && l.reopenAt.After(now) && (wakeAt.IsZero() || l.reopenAt.Before(wakeAt)) {
		wakeAt = l.reopenAt
	}
	if wakeAt.IsZero() {
		return time.Hour
	}
	return max(wakeAt.Sub(now), 0)
}

// storeOpened takes the result of opening the store.
func (l *runLoop) storeOpened(o storeResult) {
	s := l.s
	l.opening = false
	now := time.Now()
	if o.err != nil {
		l.openFails++
		if errors.Is(o.err, uidstore.ErrLocked) {
			// Another popfetch (a one-shot run from cron) has
			// the state; wait for it.
			if !l.lockedShown {
				s.log.Info("the UID store is in use by another popfetch; polls wait for it")
				l.lockedShown = true
			}
			l.reopenAt = now.Add(s.cfg.StoreGap)
			return
		}
		wait := min(time.Second<<min(l.openFails, 9), 5*time.Minute)
		s.log.Error("cannot open the UID store: "+o.err.Error(), "next_try_in", wait)
		l.reopenAt = now.Add(wait)
		return
	}
	l.openFails, l.lockedShown = 0, false
	if l.stopping || l.ctx.Err() != nil {
		o.store.Close()
		return
	}
	l.store, l.storeSince = o.store, now
}

type storeResult struct {
	store *uidstore.Store
	err   error
}

// runPoll runs one poll and reports its end. A panic in the poll is a bug;
// it fails the poll instead of the daemon.
// job is e.job as it was when the poll started (Update may change e.job).
func (s *Scheduler) runPoll(ctx context.Context, e *entry, job Job, store *uidstore.Store, stop <-chan struct{}, results chan<- result) {
	r := result{e: e}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("internal error: a poll panicked", "account", job.Name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			r.err = &fetch.Error{Account: job.Name, Kind: fetch.KindInternal, Err: fmt.Errorf("panic: %v", p)}
		}
		results <- r
	}()
	r.st, r.err = job.Poll(ctx, store, stop)
}
