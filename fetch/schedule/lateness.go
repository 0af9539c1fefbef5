package schedule

import (
	"math"
	"time"
)

// Lateness counts how late polls started: from the time a poll was due
// (its interval and jitter included) to its start. Polls start late when
// the limits are taken, while the UID store is shared with a one-shot run,
// or when the daemon cannot keep up.
//
// The counts are a histogram with latenessPerOctave buckets for every
// doubling from a millisecond, so a quantile read from it is within about
// 9% of the true value; it costs the same whatever the number of polls.
// Bucket 0 holds polls less than a millisecond late.
type Lateness struct {
	Count   uint64        `json:"count"`
	Max     time.Duration `json:"max"` // since the daemon started
	Buckets []uint64      `json:"buckets"`
}

const (
	latenessPerOctave = 8
	latenessBuckets   = 1 + 24*latenessPerOctave // up to 2^24 ms, over 4 hours; later counts in the last
)

// latenessBucket returns the bucket for a lateness of d.
func latenessBucket(d time.Duration) int {
	ms := float64(d) / float64(time.Millisecond)
	if ms < 1 {
		return 0
	}
	i := 1 + int(math.Log2(ms)*latenessPerOctave)
	return min(i, latenessBuckets-1)
}

// LatenessBound returns the upper bound of bucket i: every lateness in
// it is shorter.
func LatenessBound(i int) time.Duration {
	return time.Duration(math.Exp2(float64(i)/latenessPerOctave) * float64(time.Millisecond))
}

// add counts a poll that started d late.
func (l *Lateness) add(d time.Duration) {
	d = max(d, 0)
	if l.Buckets == nil {
		l.Buckets = make([]uint64, latenessBuckets)
	}
	l.Buckets[latenessBucket(d)]++
	l.Count++
	l.Max = max(l.Max, d)
}

// Since returns the polls counted in l and not in earlier, a reading of
// the same histogram taken before. Its Max is the bound of the highest
// bucket counted in between (or l.Max if that is smaller).
func (l Lateness) Since(earlier Lateness) Lateness {
	out := Lateness{Count: l.Count - earlier.Count, Buckets: make([]uint64, len(l.Buckets))}
	for i, n := range l.Buckets {
		if i < len(earlier.Buckets) {
			n -= earlier.Buckets[i]
		}
		out.Buckets[i] = n
		if n > 0 {
			out.Max = min(LatenessBound(i), l.Max)
		}
	}
	return out
}

// Quantile returns the lateness that the fraction q of the polls did not
// exceed, as the upper bound of its bucket (never above Max).
func (l Lateness) Quantile(q float64) time.Duration {
	if l.Count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(l.Count)))
	var seen uint64
	for i, n := range l.Buckets {
		seen += n
		if seen >= max(rank, 1) {
			return min(LatenessBound(i), l.Max)
		}
	}
	return l.Max
}
