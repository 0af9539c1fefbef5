package schedule

import (
	"errors"
	"log/slog"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/pop3"
)

// plan is the Scheduler's bookkeeping without goroutines or clocks: which
// job is due, which may start under the limits, and when each polls next.
// Every method takes the current time, so tests drive it with a fake
// clock. The Scheduler calls it with its mutex held.
type plan struct {
	// maxPolls and maxPerServer are the limits configured; 0 sets them
	// from the jobs' poll rate (see autoLimits), in pollLimit and
	// serverLimit.
	maxPolls     int
	maxPerServer int
	pollLimit    int
	serverLimit  map[string]int // by Job.Server, when maxPerServer is 0
	maxBackoff   time.Duration
	jitter       func(max time.Duration) time.Duration
	log          *slog.Logger
	tick         time.Duration // Config.Tick when it is 0: see autoTick

	entries []*entry // in the order of the configuration
	// due[i] is when entries[i] is due, as the time since epoch, or
	// notDue while it polls. The loop asks what is due several times a
	// poll; scanning this array answers without touching thousands of
	// entries spread over memory.
	due       []time.Duration
	epoch     time.Time
	active    []*entry // the entries polling now
	byName    map[string]*entry
	running   int
	perServer map[string]int
	busy      map[string]bool // mailboxes being polled
	late      Lateness        // how late polls started
}

// entry is a job and its schedule.
type entry struct {
	job     Job
	idx     int // in plan.entries
	next    time.Time
	running bool
	removed bool // dropped by update while its poll ran
	again   bool // asked to poll now while its poll ran
	// stopped: its last poll needs a new authorization; it is not due
	// until resume or update.
	stopped  bool
	failures int // polls failed in a row
	// failedBefore is failures when update forgot them (a changed
	// configuration), so that the recovery is still logged.
	failedBefore int
	lastKind     fetch.Kind // the kind of the last failure, for logging a streak once
	loginDelay   time.Duration
	status       JobStatus
	// The server and mailbox the running poll counts against (update
	// may change job meanwhile).
	slotServer, slotMailbox string
}

// The bounds of the random delay added to every wait, so that accounts on
// one server drift apart instead of polling in lockstep: up to a tenth of
// the wait, and at most maxJitter (firstJitter for the first poll).
const (
	maxJitter   = time.Minute
	firstJitter = 2 * time.Second
)

// startRate is how many first polls a second the accounts added at once
// (at the start, or by a reload) fall due at, at most: more accounts than
// firstJitter holds at that rate are spread over up to their interval.
// 10,000 accounts at 5 minutes then start as they go on, about 33 a
// second, instead of 10,000 logins in two seconds that no server answers
// on time.
const startRate = 20

// firstSpread returns the bound of the first poll's random delay for a
// job with interval d, one of n added at once.
func firstSpread(d time.Duration, n int) time.Duration {
	spread := time.Duration(n) * time.Second / startRate
	return max(min(d/10, firstJitter), min(d, spread))
}

// The limits the daemon sets itself when the configuration sets none:
// enough polls at once that every account is polled on time even when a
// poll takes autoPollTime (a distant server: a dozen round trips of
// 80 ms), and at least minAutoPolls and minAutoPerServer. Polls that are
// faster never run that many at once: the limits are ceilings. 10,000
// accounts on one server every 5 minutes, 33 polls a second, get 34
// sessions; a few accounts keep 4 polls at once and 2 to one server.
const (
	autoPollTime     = time.Second
	minAutoPolls     = 4
	minAutoPerServer = 2
)

// setLimits sets pollLimit and serverLimit from the configured limits
// and the jobs' poll rate.
func (p *plan) setLimits() {
	var total float64
	rates := map[string]float64{}
	for _, e := range p.entries {
		r := float64(autoPollTime) / float64(max(e.job.Interval, time.Second))
		total += r
		rates[e.job.Server] += r
	}
	p.tick = autoTick(p.entries)
	p.pollLimit = p.maxPolls
	if p.pollLimit <= 0 {
		p.pollLimit = max(minAutoPolls, int(math.Ceil(total)))
	}
	p.serverLimit = nil
	if p.maxPerServer <= 0 {
		p.serverLimit = make(map[string]int, len(rates))
		for srv, r := range rates {
			p.serverLimit[srv] = max(minAutoPerServer, int(math.Ceil(r)))
		}
	}
}

// The automatic tick (Config.Tick) is a hundredth of the shortest
// interval, between these bounds.
const (
	minAutoTick = 100 * time.Millisecond
	maxAutoTick = time.Second
)

// autoTick returns the tick for jobs: a poll started up to a hundredth
// of its interval late goes unnoticed, and a longer tick gathers more
// polls a wake (each wake from idle costs the daemon more CPU than a
// small poll's own work).
func autoTick(entries []*entry) time.Duration {
	shortest := time.Duration(math.MaxInt64)
	for _, e := range entries {
		shortest = min(shortest, e.job.Interval)
	}
	return min(max(shortest/100, minAutoTick), maxAutoTick)
}

// serverMax returns the limit of polls at once on server.
func (p *plan) serverMax(server string) int {
	if p.maxPerServer > 0 {
		return p.maxPerServer
	}
	return max(p.serverLimit[server], minAutoPerServer)
}

// notDue marks a running entry in plan.due.
const notDue = time.Duration(math.MaxInt64)

// setNext makes e due at t.
func (p *plan) setNext(e *entry, t time.Time) {
	e.next = t
	p.due[e.idx] = t.Sub(p.epoch)
}

func newPlan(maxPolls, maxPerServer int, maxBackoff time.Duration, jitter func(time.Duration) time.Duration, log *slog.Logger) *plan {
	return &plan{
		maxPolls: maxPolls, maxPerServer: maxPerServer, maxBackoff: maxBackoff, jitter: jitter, log: log,
		byName: map[string]*entry{}, perServer: map[string]int{}, busy: map[string]bool{},
	}
}

// jitterFor returns the random delay to add to a wait of d.
func (p *plan) jitterFor(d, limit time.Duration) time.Duration {
	bound := min(d/10, limit)
	if bound <= 0 {
		return 0
	}
	j := p.jitter(bound)
	return max(0, min(j, bound))
}

// firstJitter returns the random delay of the first poll of a job with
// interval d, one of n added at once: up to a tenth of the interval, at
// most firstJitter; spread further when many are added (firstSpread).
func (p *plan) firstJitter(d time.Duration, n int) time.Duration {
	bound := firstSpread(d, n)
	if bound <= 0 {
		return 0
	}
	return max(0, min(p.jitter(bound), bound))
}

// update replaces the set of jobs. A job that keeps its name keeps its
// schedule, unless its configuration changed: then its failures are
// forgotten and it is due at once (the user may have fixed what failed).
// A job removed while it polls is dropped when the poll ends.
func (p *plan) update(jobs []Job, now time.Time) {
	if p.epoch.IsZero() {
		p.epoch = now
	}
	keep := make(map[string]bool, len(jobs))
	entries := make([]*entry, 0, len(jobs))
	added := 0
	for _, j := range jobs {
		if p.byName[j.Name] == nil {
			added++
		}
	}
	for _, j := range jobs {
		keep[j.Name] = true
		e := p.byName[j.Name]
		switch {
		case e == nil:
			e = &entry{job: j, next: now.Add(p.firstJitter(j.Interval, added))}
			e.status = JobStatus{Name: j.Name, Server: j.Server}
			p.byName[j.Name] = e
		case e.job.Config != j.Config:
			e.failedBefore = max(e.failures, e.failedBefore)
			e.failures, e.lastKind = 0, 0
			e.status.Failures, e.status.Backoff = 0, 0
			if e.job.Server != j.Server {
				e.loginDelay, e.status.LoginDelay = 0, 0
			}
			if !e.running {
				e.next = e.earliest(now)
			}
		}
		if e.stopped {
			// A reload: the user may have authorized meanwhile.
			e.stopped, e.status.NeedsAuth = false, false
			if !e.running {
				e.next = e.earliest(now)
			}
		}
		e.removed = false
		e.job = j
		e.status.Server = j.Server
		entries = append(entries, e)
	}
	for name, e := range p.byName {
		if keep[name] {
			continue
		}
		if e.running {
			e.removed = true
			continue
		}
		delete(p.byName, name)
	}
	p.entries = entries
	p.setLimits()
	p.due = make([]time.Duration, len(entries))
	for i, e := range entries {
		e.idx = i
		p.due[i] = notDue
		if !e.running {
			p.setNext(e, e.next)
		}
	}
}

// pollNow makes every job due at once, or as soon as the server's
// LOGIN-DELAY allows; a job that is polling polls again as soon as it
// ends (and LOGIN-DELAY allows).
func (p *plan) pollNow(now time.Time) {
	for _, e := range p.entries {
		if e.stopped {
			continue // it would fail the same way: resume or update
		}
		if e.running {
			e.again = true
		} else {
			p.setNext(e, e.earliest(now))
		}
	}
}

// resume makes a stopped job due at once and reports whether it was
// stopped.
func (p *plan) resume(name string, now time.Time) bool {
	e := p.byName[name]
	if e == nil || !e.stopped {
		return false
	}
	e.stopped, e.status.NeedsAuth = false, false
	e.failures, e.lastKind = 0, 0
	if !e.running {
		p.setNext(e, e.earliest(now))
	}
	return true
}

// needsAuth reports whether err says that only a new authorization can
// help (see Scheduler).
func needsAuth(err error) bool {
	var na interface{ NeedsAuth() bool }
	return errors.As(err, &na) && na.NeedsAuth()
}

// earliest returns the earliest time from now that e may poll: not
// sooner after its last poll than the server's LOGIN-DELAY.
func (e *entry) earliest(now time.Time) time.Time {
	if e.loginDelay > 0 && !e.status.LastEnd.IsZero() {
		if t := e.status.LastEnd.Add(e.loginDelay); t.After(now) {
			return t
		}
	}
	return now
}

// start marks the jobs that are due and may start now as running, and
// returns them, earliest due first. A job waits while its mailbox is
// being polled, while its server has maxPerServer polls, or while
// maxPolls polls run.
func (p *plan) start(now time.Time) []*entry {
	t := now.Sub(p.epoch)
	var due []int
	for i, d := range p.due {
		if d <= t {
			due = append(due, i)
		}
	}
	sort.SliceStable(due, func(i, j int) bool { return p.due[due[i]] < p.due[due[j]] })
	var started []*entry
	for _, i := range due {
		e := p.entries[i]
		if p.running >= p.pollLimit {
			break
		}
		if p.perServer[e.job.Server] >= p.serverMax(e.job.Server) || p.busy[e.job.Mailbox] {
			continue
		}
		p.late.add(now.Sub(e.next))
		e.running = true
		p.due[i] = notDue
		p.active = append(p.active, e)
		e.slotServer, e.slotMailbox = e.job.Server, e.job.Mailbox
		p.running++
		p.perServer[e.slotServer]++
		p.busy[e.slotMailbox] = true
		e.status.Running = true
		e.status.LastStart = now
		started = append(started, e)
	}
	return started
}

// hasDue reports whether a job is due but not running: waiting for a
// limit, or for the UID store.
func (p *plan) hasDue(now time.Time) bool {
	t := now.Sub(p.epoch)
	for _, d := range p.due {
		if d <= t {
			return true
		}
	}
	return false
}

// dueWithin reports whether a job not running falls due within d of now.
func (p *plan) dueWithin(now time.Time, d time.Duration) bool {
	t := now.Add(d).Sub(p.epoch)
	for _, at := range p.due {
		if at <= t {
			return true
		}
	}
	return false
}

// oldestStart returns when the longest-running poll started; zero if
// none runs.
func (p *plan) oldestStart() time.Time {
	var t time.Time
	for _, e := range p.active {
		if t.IsZero() || e.status.LastStart.Before(t) {
			t = e.status.LastStart
		}
	}
	return t
}

// wake returns when the next job not yet due falls due; ok is false if
// there is none. Jobs already due start when a poll ends (freeing a
// limit) or the store opens, not by the clock.
func (p *plan) wake(now time.Time) (t time.Time, ok bool) {
	nowT := now.Sub(p.epoch)
	first, at := -1, notDue
	for i, d := range p.due {
		if d > nowT && d < at {
			first, at = i, d
		}
	}
	if first < 0 {
		return time.Time{}, false
	}
	return p.entries[first].next, true
}

// maxWait bounds any wait the plan computes, so that no sum of waits can
// overflow a time and put the next poll in the past.
const maxWait = 7 * 24 * time.Hour

// finish records the end of e's poll and schedules its next one.
func (p *plan) finish(e *entry, st fetch.Stats, err error, now time.Time) {
	e.running = false
	if i := slices.Index(p.active, e); i >= 0 {
		p.active = slices.Delete(p.active, i, i+1)
	}
	p.running--
	if p.perServer[e.slotServer]--; p.perServer[e.slotServer] <= 0 {
		delete(p.perServer, e.slotServer)
	}
	delete(p.busy, e.slotMailbox)
	if e.removed {
		if p.byName[e.job.Name] == e {
			delete(p.byName, e.job.Name)
		}
		return
	}
	if st.LoginDelay > 0 {
		e.loginDelay = st.LoginDelay
	}
	s := &e.status
	s.Running = false
	s.LastEnd = now
	s.Polls++
	s.LastFetched, s.LastBytes = st.Delivered, st.Bytes
	s.Fetched += st.Delivered
	s.Bytes += st.Bytes

	log := p.log.With("account", e.job.Name)
	var fe *fetch.Error
	if err != nil && !errors.As(err, &fe) {
		fe = &fetch.Error{Account: e.job.Name, Kind: fetch.KindInternal, Err: err}
	}
	delay := e.job.Interval
	switch {
	case fe == nil, fe.Kind == fetch.KindCanceled:
		if n := max(e.failures, e.failedBefore); n > 0 && fe == nil {
			log.Info("polling works again", "after_failures", n)
		}
		e.failures, e.lastKind = 0, 0
		s.LastResult, s.LastError = "ok", ""
		if fe != nil {
			s.LastResult = "interrupted"
		}
	case needsAuth(fe):
		e.failures++
		e.stopped, e.again = true, false
		s.LastResult, s.LastError = fe.Kind.String(), fe.Err.Error()
		s.NeedsAuth = true
		log.Error(fe.Summary() + " (this account stops polling until popfetch auth saves a new token or the configuration is reloaded; the others go on)")
		e.lastKind = fe.Kind
		e.failedBefore = 0
		e.next = time.Time{}
		p.due[e.idx] = notDue
		s.Failures, s.Backoff, s.Next = e.failures, 0, time.Time{}
		return
	default:
		e.failures++
		delay = p.backoff(e, fe)
		s.LastResult, s.LastError = fe.Kind.String(), fe.Err.Error()
		msg := fe.Summary()
		switch {
		case e.failures == 1 || fe.Kind != e.lastKind:
			if hard(fe) {
				msg += " (retrying at long intervals; after fixing the configuration, send SIGHUP to retry at once)"
			}
			log.Error(msg, "next_try_in", delay.Round(time.Second))
		case hard(fe):
			// Logged once for the streak: a wrong password does not
			// become right by repeating it every poll.
			log.Debug(msg, "failures", e.failures, "next_try_in", delay.Round(time.Second))
		default:
			log.Warn(msg, "failures", e.failures, "next_try_in", delay.Round(time.Second))
		}
		e.lastKind = fe.Kind
	}
	e.failedBefore = 0
	if e.again {
		e.again = false
		delay = 0
	}
	// The server's LOGIN-DELAY wins over the interval and over a poll
	// asked for at once: a login sooner is refused, and may count
	// against the account.
	delay = min(max(delay, e.loginDelay), maxWait)
	s.LoginDelay = e.loginDelay
	p.setNext(e, now.Add(delay+p.jitterFor(delay, maxJitter)))
	s.Failures = e.failures
	s.Backoff = 0
	if e.failures > 0 {
		s.Backoff = delay
	}
	s.Next = e.next
}

// hard reports failures that waiting a little will not cure: the
// credentials, the certificate, the configuration.
func hard(fe *fetch.Error) bool {
	return fe.Kind == fetch.KindAuth || fe.Kind == fetch.KindTLS || fe.Kind == fetch.KindConfig
}

// backoff returns the wait after e's latest failure: the interval doubled
// for each failure in a row, up to maxBackoff (or the interval, if that is
// longer); the longest wait at once after a hard failure; and no less
// than the server's LOGIN-DELAY after -ERR [LOGIN-DELAY].
func (p *plan) backoff(e *entry, fe *fetch.Error) time.Duration {
	interval := e.job.Interval
	ceiling := max(p.maxBackoff, interval)
	if hard(fe) {
		return ceiling
	}
	d := max(interval, time.Second)
	for i := 0; i < e.failures && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	var perr *pop3.Error
	if errors.As(fe, &perr) && perr.HasCode(pop3.CodeLoginDelay) {
		// The server says we came too soon. Without a LOGIN-DELAY in
		// CAPA, wait at least five minutes, as fetchmail's users learn to.
		d = max(d, e.loginDelay, 5*time.Minute)
	}
	return d
}
