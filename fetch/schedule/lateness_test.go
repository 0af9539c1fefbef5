package schedule

import (
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
)

func TestLatenessBuckets(t *testing.T) {
	for _, d := range []time.Duration{0, 500 * time.Microsecond, time.Millisecond, 3 * time.Millisecond,
		time.Second, 7 * time.Second, time.Hour} {
		i := latenessBucket(d)
		if d >= LatenessBound(i) {
			t.Errorf("%v in bucket %d, whose bound is %v", d, i, LatenessBound(i))
		}
		if i > 0 && d < LatenessBound(i-1) {
			t.Errorf("%v in bucket %d, below the bound of the one before, %v", d, i, LatenessBound(i-1))
		}
		if i > 0 && float64(LatenessBound(i))/float64(d) > 1.1 {
			t.Errorf("%v: bound %v is more than 10%% above", d, LatenessBound(i))
		}
	}
	if i := latenessBucket(1000 * time.Hour); i != latenessBuckets-1 {
		t.Errorf("1000h in bucket %d, want the last, %d", i, latenessBuckets-1)
	}
}

func TestLatenessQuantiles(t *testing.T) {
	var l Lateness
	for i := range 100 {
		l.add(time.Duration(i+1) * time.Millisecond) // 1..100 ms
	}
	near := func(got, want time.Duration) bool { return got >= want && float64(got) <= 1.1*float64(want) }
	if got := l.Quantile(0.5); !near(got, 50*time.Millisecond) {
		t.Errorf("p50 = %v, want about 50ms", got)
	}
	if got := l.Quantile(0.99); !near(got, 99*time.Millisecond) {
		t.Errorf("p99 = %v, want about 99ms", got)
	}
	if got := l.Quantile(1); got != 100*time.Millisecond {
		t.Errorf("p100 = %v, want the max, 100ms", got)
	}
	before := l
	before.Buckets = append([]uint64(nil), l.Buckets...)
	l.add(2 * time.Second)
	l.add(3 * time.Second)
	w := l.Since(before)
	if w.Count != 2 || w.Quantile(0.5) < 2*time.Second || w.Quantile(0.5) > 2200*time.Millisecond || w.Max != 3*time.Second {
		t.Errorf("since: count %d, p50 %v, max %v; want 2, about 2s, 3s", w.Count, w.Quantile(0.5), w.Max)
	}
}

// The plan counts how late each poll starts, from the time it was due.
func TestPlanCountsLateness(t *testing.T) {
	p, _ := newTestPlan(noJitter)
	p.maxPolls = 1
	p.update([]Job{job("a", "s1", time.Minute), job("b", "s2", time.Minute)}, t0)
	started := mustStart(t, p, t0, "a")
	p.finish(started[0], fetch.Stats{}, nil, t0.Add(3*time.Second))
	mustStart(t, p, t0.Add(3*time.Second), "b") // due at t0, 3 s late
	if p.late.Count != 2 || p.late.Max != 3*time.Second || p.late.Quantile(0.5) != time.Millisecond {
		t.Errorf("lateness: count %d, max %v, p50 %v; want 2, 3s, 1ms (the first bucket)", p.late.Count, p.late.Max, p.late.Quantile(0.5))
	}
}
