package schedule

import (
	"context"
	"errors"
	"fmt"
	"github.com/popfetch/popfetch/fetch"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3"
)

// These tests drive the plan with a fake clock: every call gets the time
// the test says it is.

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// countingHandler counts log records by level.
type countingHandler struct {
	mu     sync.Mutex
	counts map[slog.Level]int
	msgs   []string
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counts == nil {
		h.counts = map[slog.Level]int{}
	}
	h.counts[r.Level]++
	h.msgs = append(h.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func (h *countingHandler) count(l slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[l]
}

func job(name, server string, interval time.Duration) Job {
	return Job{Name: name, Mailbox: name + "@" + server, Server: server, Interval: interval, Config: "v1"}
}

// noJitter and fullJitter are the extremes of the jitter.
func noJitter(time.Duration) time.Duration       { return 0 }
func fullJitter(max time.Duration) time.Duration { return max }

func newTestPlan(jitter func(time.Duration) time.Duration) (*plan, *countingHandler) {
	h := &countingHandler{}
	return newPlan(4, 2, time.Hour, jitter, slog.New(h)), h
}

// mustStart starts what is due at now and checks that it is exactly names.
func mustStart(t *testing.T, p *plan, now time.Time, names ...string) []*entry {
	t.Helper()
	started := p.start(now)
	var got []string
	for _, e := range started {
		got = append(got, e.job.Name)
	}
	if fmt.Sprint(got) != fmt.Sprint(names) {
		t.Fatalf("at %v started %v, want %v", now.Sub(t0), got, names)
	}
	return started
}

func TestPlanIntervalAndJitter(t *testing.T) {
	p, _ := newTestPlan(fullJitter)
	p.update([]Job{job("a", "s:1", 5*time.Minute)}, t0)
	// The first poll comes within firstJitter of the start.
	mustStart(t, p, t0.Add(time.Second))
	e := mustStart(t, p, t0.Add(firstJitter), "a")[0]
	end := t0.Add(3 * time.Second)
	p.finish(e, fetch.Stats{}, nil, end)
	// The next comes an interval after the end, plus at most a tenth of it.
	want := end.Add(5*time.Minute + 30*time.Second)
	if !e.next.Equal(want) {
		t.Fatalf("next at %v, want %v", e.next.Sub(t0), want.Sub(t0))
	}
	if w, ok := p.wake(end); !ok || !w.Equal(want) {
		t.Errorf("wake %v %v", w, ok)
	}
	mustStart(t, p, want.Add(-time.Millisecond))
	mustStart(t, p, want, "a")

	// The jitter of a long interval is capped at maxJitter.
	p2, _ := newTestPlan(fullJitter)
	p2.update([]Job{job("b", "s:1", 24*time.Hour)}, t0)
	e = mustStart(t, p2, t0.Add(firstJitter), "b")[0]
	p2.finish(e, fetch.Stats{}, nil, t0.Add(firstJitter))
	if got := e.next.Sub(t0.Add(firstJitter)); got != 24*time.Hour+maxJitter {
		t.Errorf("wait %v, want a day and %v", got, maxJitter)
	}
}

// TestPlanJitterBounds: with real randomness every wait lies within
// [interval, interval + interval/10], and the waits differ.
func TestPlanJitterBounds(t *testing.T) {
	p, _ := newTestPlan(func(max time.Duration) time.Duration { return rand.N(max + 1) })
	var jobs []Job
	for i := range 50 {
		jobs = append(jobs, job(fmt.Sprint("acct", i), fmt.Sprint("s", i, ":1"), time.Minute))
	}
	p.maxPolls, p.maxPerServer = 100, 100
	p.update(jobs, t0)
	now := t0.Add(firstJitter)
	distinct := map[time.Time]bool{}
	for _, e := range p.start(now) {
		p.finish(e, fetch.Stats{}, nil, now)
		wait := e.next.Sub(now)
		if wait < time.Minute || wait > time.Minute+6*time.Second {
			t.Errorf("%s waits %v", e.job.Name, wait)
		}
		distinct[e.next] = true
	}
	if len(distinct) < 25 {
		t.Errorf("only %d distinct next times for 50 accounts: accounts would poll in lockstep", len(distinct))
	}
}

func netErr(name string) error {
	return &fetch.Error{Account: name, Kind: fetch.KindNetwork, Err: errors.New("connection refused")}
}

func TestPlanBackoff(t *testing.T) {
	p, h := newTestPlan(noJitter)
	p.update([]Job{job("a", "s:1", 5*time.Minute)}, t0)
	now := t0
	e := mustStart(t, p, now, "a")[0]
	for i, want := range []time.Duration{10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour, time.Hour} {
		p.finish(e, fetch.Stats{}, netErr("a"), now)
		if got := e.next.Sub(now); got != want {
			t.Fatalf("failure %d: wait %v, want %v", i+1, got, want)
		}
		if e.status.Backoff != want || e.status.Failures != i+1 || e.status.LastResult != "network error" {
			t.Errorf("status %+v", e.status)
		}
		now = e.next
		mustStart(t, p, now, "a")
	}
	// One error line for the streak's start, warnings after.
	if h.count(slog.LevelError) != 1 || h.count(slog.LevelWarn) != 4 {
		t.Errorf("logged %v", h.msgs)
	}
	// Success resets the backoff.
	p.finish(e, fetch.Stats{Delivered: 2, Bytes: 100}, nil, now)
	if got := e.next.Sub(now); got != 5*time.Minute {
		t.Errorf("after success wait %v", got)
	}
	if e.status.Failures != 0 || e.status.Backoff != 0 || e.status.LastResult != "ok" || e.status.Fetched != 2 {
		t.Errorf("status %+v", e.status)
	}
	if h.count(slog.LevelInfo) != 1 {
		t.Errorf("recovery not logged once: %v", h.msgs)
	}
}

// TestPlanBackoffTable covers the cap and intervals longer than it.
func TestPlanBackoffTable(t *testing.T) {
	for _, tc := range []struct {
		interval time.Duration
		err      error
		failures int
		want     time.Duration
	}{
		{5 * time.Second, netErr("a"), 1, 10 * time.Second},
		{5 * time.Second, netErr("a"), 3, 40 * time.Second},
		{5 * time.Second, netErr("a"), 30, time.Hour},
		{2 * time.Hour, netErr("a"), 1, 2 * time.Hour}, // never more often than the interval, never capped below it
		{5 * time.Minute, &fetch.Error{Kind: fetch.KindAuth, Err: errors.New("bad password")}, 1, time.Hour},
		{5 * time.Minute, &fetch.Error{Kind: fetch.KindTLS, Err: errors.New("x509")}, 1, time.Hour},
		{5 * time.Minute, &fetch.Error{Kind: fetch.KindLocked, Err: &pop3.Error{Code: "IN-USE"}}, 1, 10 * time.Minute},
		{time.Minute, &fetch.Error{Kind: fetch.KindServer, Err: &pop3.Error{Code: "LOGIN-DELAY"}}, 1, 5 * time.Minute},
		{time.Minute, errors.New("not a fetch.Error"), 1, 2 * time.Minute},
	} {
		p, _ := newTestPlan(noJitter)
		e := &entry{job: job("a", "s:1", tc.interval), failures: tc.failures}
		var fe *fetch.Error
		if !errors.As(tc.err, &fe) {
			fe = &fetch.Error{Kind: fetch.KindInternal, Err: tc.err}
		}
		if got := p.backoff(e, fe); got != tc.want {
			t.Errorf("interval %v, %v, %d failures: %v, want %v", tc.interval, tc.err, tc.failures, got, tc.want)
		}
	}
}

// TestPlanAuthFailure: a refused login backs off hard, is logged once
// however often it repeats, and a changed configuration (after SIGHUP)
// makes the account due at once with its failures forgotten.
func TestPlanAuthFailure(t *testing.T) {
	p, h := newTestPlan(noJitter)
	p.update([]Job{job("a", "s:1", time.Minute)}, t0)
	now := t0
	authErr := &fetch.Error{Account: "a", Kind: fetch.KindAuth, Err: errors.New("-ERR [AUTH] invalid credentials")}
	for range 5 {
		e := mustStart(t, p, now, "a")[0]
		p.finish(e, fetch.Stats{}, authErr, now)
		if got := e.next.Sub(now); got != time.Hour {
			t.Fatalf("wait %v after an authentication failure", got)
		}
		now = e.next
	}
	if h.count(slog.LevelError) != 1 || h.count(slog.LevelWarn) != 0 {
		t.Errorf("logged %v", h.msgs)
	}
	fixed := job("a", "s:1", time.Minute)
	fixed.Config = "v2"
	p.update([]Job{fixed}, now.Add(-50*time.Minute))
	e := mustStart(t, p, now.Add(-50*time.Minute), "a")[0]
	if e.failures != 0 || e.status.Failures != 0 {
		t.Errorf("failures kept after the configuration changed: %d", e.failures)
	}
	// An unchanged configuration keeps the backoff.
	p.finish(e, fetch.Stats{}, authErr, now)
	p.update([]Job{fixed}, now)
	mustStart(t, p, now)
}

func TestPlanLoginDelay(t *testing.T) {
	p, _ := newTestPlan(noJitter)
	p.update([]Job{job("a", "s:1", time.Minute)}, t0)
	e := mustStart(t, p, t0, "a")[0]
	p.finish(e, fetch.Stats{LoginDelay: 15 * time.Minute}, nil, t0)
	if got := e.next.Sub(t0); got != 15*time.Minute {
		t.Errorf("the server's LOGIN-DELAY of 15m gave a wait of %v", got)
	}
	e = mustStart(t, p, e.next, "a")[0]
	p.finish(e, fetch.Stats{}, nil, e.next) // the delay is remembered
	if got := e.next.Sub(e.status.LastEnd); got != 15*time.Minute {
		t.Errorf("wait %v", got)
	}
	// However long a delay a poll reports, with full jitter, the next
	// poll is not in the past (a sum that overflowed put it in 1734).
	p2, _ := newTestPlan(fullJitter)
	p2.update([]Job{job("b", "s:1", time.Minute)}, t0)
	t1 := t0.Add(time.Hour) // past the first poll's jitter
	e = mustStart(t, p2, t1, "b")[0]
	p2.finish(e, fetch.Stats{LoginDelay: time.Duration(1<<63 - 1)}, nil, t1)
	if !e.next.After(t1) {
		t.Errorf("a huge LOGIN-DELAY put the next poll at %v", e.next)
	}
}

// TestPlanLimits: never more than maxPolls at once, never more than
// maxPerServer on one server, never one mailbox twice; what waits starts
// when a poll ends.
func TestPlanLimits(t *testing.T) {
	p, _ := newTestPlan(noJitter)
	jobs := []Job{
		job("a1", "A:1", time.Minute), job("a2", "A:1", time.Minute), job("a3", "A:1", time.Minute),
		job("b1", "B:1", time.Minute), job("b2", "B:1", time.Minute),
		job("c1", "C:1", time.Minute), job("c2", "C:1", time.Minute),
	}
	// Two accounts of one mailbox (say, two deliveries of it).
	same := job("a1-copy", "A:1", time.Minute)
	same.Mailbox = jobs[0].Mailbox
	jobs = append(jobs, same)
	p.update(jobs, t0)
	running := map[string]*entry{}
	check := func(started []*entry) {
		t.Helper()
		for _, e := range started {
			running[e.job.Name] = e
		}
		perServer, mailboxes := map[string]int{}, map[string]bool{}
		for _, e := range running {
			perServer[e.job.Server]++
			if mailboxes[e.job.Mailbox] {
				t.Fatalf("mailbox %s polled twice at once", e.job.Mailbox)
			}
			mailboxes[e.job.Mailbox] = true
		}
		if len(running) > 4 {
			t.Fatalf("%d polls at once", len(running))
		}
		for s, n := range perServer {
			if n > 2 {
				t.Fatalf("%d polls of %s at once", n, s)
			}
		}
	}
	check(mustStart(t, p, t0, "a1", "a2", "b1", "b2"))
	mustStart(t, p, t0) // all limits reached
	done := map[string]bool{}
	now := t0
	for len(running) > 0 {
		// End the polls one at a time, in name order.
		var first string
		for n := range running {
			if first == "" || n < first {
				first = n
			}
		}
		now = now.Add(time.Second)
		p.finish(running[first], fetch.Stats{}, nil, now)
		delete(running, first)
		done[first] = true
		check(p.start(now))
	}
	if len(done) != len(jobs) {
		t.Errorf("polled %d of %d accounts", len(done), len(jobs))
	}
}

func TestPlanPollNow(t *testing.T) {
	p, _ := newTestPlan(noJitter)
	p.update([]Job{job("a", "s:1", time.Hour), job("b", "t:1", time.Hour)}, t0)
	ea := mustStart(t, p, t0, "a", "b")
	p.finish(ea[1], fetch.Stats{}, nil, t0)
	now := t0.Add(time.Minute)
	mustStart(t, p, now)
	p.pollNow(now)
	mustStart(t, p, now, "b") // a is still running
	p.finish(ea[0], fetch.Stats{}, nil, now.Add(time.Second))
	mustStart(t, p, now.Add(time.Second), "a") // and polls again at once
}

func TestPlanUpdate(t *testing.T) {
	p, _ := newTestPlan(noJitter)
	p.update([]Job{job("a", "s:1", time.Minute), job("b", "s:1", time.Minute)}, t0)
	started := mustStart(t, p, t0, "a", "b")
	// b is removed while it runs, c is added; a is unchanged.
	p.update([]Job{job("a", "s:1", time.Minute), job("c", "s:1", time.Minute)}, t0)
	mustStart(t, p, t0) // the server's two places are taken
	p.finish(started[1], fetch.Stats{}, nil, t0)
	if _, ok := p.byName["b"]; ok || len(p.entries) != 2 {
		t.Fatalf("b still scheduled: %v", p.byName)
	}
	mustStart(t, p, t0, "c")
	p.finish(started[0], fetch.Stats{}, nil, t0)
	if p.running != 1 || p.perServer["s:1"] != 1 {
		t.Errorf("running %d, per server %v", p.running, p.perServer)
	}
	if got := started[0].next.Sub(t0); got != time.Minute {
		t.Errorf("a kept its schedule? next in %v", got)
	}
}

// Many accounts added at once have their first polls spread at startRate
// a second, over up to their interval; a few keep the short first jitter.
func TestPlanFirstPollsSpread(t *testing.T) {
	for _, tc := range []struct {
		n        int
		interval time.Duration
		want     time.Duration
	}{
		{1, 5 * time.Minute, firstJitter},
		{8, 5 * time.Minute, firstJitter},
		{8, 10 * time.Second, time.Second},
		{1000, 5 * time.Minute, 50 * time.Second},
		{10000, 5 * time.Minute, 5 * time.Minute},
	} {
		if got := firstSpread(tc.interval, tc.n); got != tc.want {
			t.Errorf("%d accounts at %v: first polls within %v, want %v", tc.n, tc.interval, got, tc.want)
		}
	}
	p, _ := newTestPlan(fullJitter)
	var jobs []Job
	for i := range 1000 {
		jobs = append(jobs, job(fmt.Sprint(i), "s", 5*time.Minute))
	}
	p.update(jobs, t0)
	if w, ok := p.wake(t0); !ok || !w.Equal(t0.Add(50*time.Second)) {
		t.Errorf("1000 accounts: first due at %v, want 50s (the full jitter)", w.Sub(t0))
	}
	// One added to them later polls within the short jitter.
	p.update(append(jobs, job("late", "s", 5*time.Minute)), t0)
	if e := p.byName["late"]; !e.next.Equal(t0.Add(firstJitter)) {
		t.Errorf("one added later: first due at %v, want %v", e.next.Sub(t0), firstJitter)
	}
}

// Without configured limits the plan allows enough polls at once for the
// jobs' rate, at a second a poll, and at least 4 in all and 2 a server.
func TestPlanAutoLimits(t *testing.T) {
	p := newPlan(0, 0, time.Hour, noJitter, slog.New(slog.DiscardHandler))
	jobs := []Job{job("few", "small:110", 5*time.Minute)}
	for i := range 10000 {
		jobs = append(jobs, job(fmt.Sprint(i), "big:110", 5*time.Minute))
	}
	p.update(jobs, t0)
	if p.pollLimit != 34 || p.serverMax("big:110") != 34 || p.serverMax("small:110") != 2 {
		t.Errorf("limits %d in all, %d on big, %d on small; want 34, 34, 2", p.pollLimit, p.serverMax("big:110"), p.serverMax("small:110"))
	}
	started := p.start(t0)
	if len(started) != 34 {
		t.Errorf("%d started at once, want 34", len(started))
	}
	p.update(jobs[:3], t0)
	if p.pollLimit != 4 || p.serverMax("big:110") != 2 {
		t.Errorf("3 jobs: limits %d, %d; want 4, 2", p.pollLimit, p.serverMax("big:110"))
	}
	// Configured limits win.
	p2 := newPlan(3, 1, time.Hour, noJitter, slog.New(slog.DiscardHandler))
	p2.update(jobs, t0)
	if p2.pollLimit != 3 || p2.serverMax("big:110") != 1 {
		t.Errorf("configured: %d, %d; want 3, 1", p2.pollLimit, p2.serverMax("big:110"))
	}
}

// TestPlanAutoTick: the tick that gathers due polls is a hundredth of
// the shortest interval, between 100 ms and 1 s, and follows a reload.
func TestPlanAutoTick(t *testing.T) {
	tests := []struct {
		intervals []time.Duration
		want      time.Duration
	}{
		{[]time.Duration{5 * time.Minute}, time.Second},
		{[]time.Duration{5 * time.Minute, time.Minute}, 600 * time.Millisecond},
		{[]time.Duration{time.Hour, 20 * time.Second}, 200 * time.Millisecond},
		{[]time.Duration{2 * time.Second}, 100 * time.Millisecond},
		{[]time.Duration{24 * time.Hour}, time.Second},
	}
	for _, tt := range tests {
		p := newPlan(0, 0, time.Hour, noJitter, slog.New(slog.DiscardHandler))
		var jobs []Job
		for i, d := range tt.intervals {
			jobs = append(jobs, job(fmt.Sprint(i), "s:110", d))
		}
		p.update(jobs, t0)
		if p.tick != tt.want {
			t.Errorf("intervals %v: tick %v, want %v", tt.intervals, p.tick, tt.want)
		}
	}
	p := newPlan(0, 0, time.Hour, noJitter, slog.New(slog.DiscardHandler))
	p.update([]Job{job("a", "s:110", 5*time.Minute)}, t0)
	p.update([]Job{job("a", "s:110", 5*time.Minute), job("b", "s:110", 10*time.Second)}, t0)
	if p.tick != 100*time.Millisecond {
		t.Errorf("after a reload that added a 10 s job: tick %v, want 100ms", p.tick)
	}
}
