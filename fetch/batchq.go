package fetch

import (
	"sync"
	"time"
)

// batchQueue carries staged messages from the reader to the sequencer in
// server order, a batch at a time. It is bounded: put waits while it is
// full. It wakes the sequencer about twice a batch (for the first
// message, and when a batch is full or its time is up), where a channel
// would wake it for every message: with the disk out of the way, those
// hand-offs between goroutines were a good part of a poll's CPU.
type batchQueue struct {
	mu      sync.Mutex
	space   sync.Cond // signalled when items shrinks or the queue closes
	items   []*fetched
	firstAt time.Time // when the oldest item came
	closed  bool
	limit   int           // items held at most
	batch   int           // items a take returns at most
	wait    time.Duration // how long a take waits for a batch to fill
	ready   chan struct{} // a token: the sequencer should look again
}

func newBatchQueue(limit, batch int, wait time.Duration) *batchQueue {
	q := &batchQueue{limit: max(limit, batch, 1), batch: max(batch, 1), wait: wait, ready: make(chan struct{}, 1)}
	q.space.L = &q.mu
	return q
}

func (q *batchQueue) poke() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// put adds f, waiting while the queue is full. It reports false, having
// added nothing, once the queue is closed.
func (q *batchQueue) put(f *fetched) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) >= q.limit && !q.closed {
		q.space.Wait()
	}
	if q.closed {
		return false
	}
	q.items = append(q.items, f)
	switch len(q.items) {
	case 1:
		q.firstAt = time.Now()
		q.poke()
	case q.batch:
		q.poke()
	}
	return true
}

// close ends the queue: what it holds is still taken, and put refuses
// more. It may be called more than once, from any goroutine.
func (q *batchQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.space.Broadcast()
	q.poke()
}

// take appends the next batch to dst: it waits for a first item as long
// as it takes, then until a batch is full, the queue is closed, or the
// first item has waited q.wait. It returns dst unchanged once the queue
// is closed and empty.
func (q *batchQueue) take(dst []*fetched, timer *time.Timer) []*fetched {
	for {
		q.mu.Lock()
		n := len(q.items)
		var left time.Duration
		if n > 0 {
			left = q.wait - time.Since(q.firstAt)
		}
		if n >= q.batch || q.closed || (n > 0 && left <= 0) {
			k := min(n, q.batch)
			dst = append(dst, q.items[:k]...)
			rest := copy(q.items, q.items[k:])
			clear(q.items[rest:])
			q.items = q.items[:rest]
			if rest > 0 {
				q.firstAt = time.Now()
			}
			q.space.Broadcast()
			q.mu.Unlock()
			return dst
		}
		q.mu.Unlock()
		if n == 0 {
			<-q.ready
			continue
		}
		timer.Reset(left)
		select {
		case <-q.ready:
			timer.Stop()
		case <-timer.C:
		}
	}
}
