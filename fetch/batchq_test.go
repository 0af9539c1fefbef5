package fetch

import (
	"sync"
	"testing"
	"time"
)

func nums(fs []*fetched) []int {
	out := make([]int, len(fs))
	for i, f := range fs {
		out[i] = f.num
	}
	return out
}

// TestBatchQueueOrderAndBatches: take returns the items in the order put,
// at most a batch at a time, a full batch at once, and a partial one
// once its first item has waited long enough.
func TestBatchQueueOrderAndBatches(t *testing.T) {
	q := newBatchQueue(8, 3, 30*time.Millisecond)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for i := 1; i <= 4; i++ {
		if !q.put(&fetched{message: message{num: i}}) {
			t.Fatal("put refused")
		}
	}
	start := time.Now()
	if got := nums(q.take(nil, timer)); len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Fatalf("first batch %v", got)
	}
	if d := time.Since(start); d > 20*time.Millisecond {
		t.Errorf("a full batch waited %v", d)
	}
	start = time.Now()
	if got := nums(q.take(nil, timer)); len(got) != 1 || got[0] != 4 {
		t.Fatalf("second batch %v", got)
	}
	if d := time.Since(start); d < 5*time.Millisecond {
		t.Errorf("a partial batch was taken after %v, before its time", d)
	}
	q.close()
	if got := q.take(nil, timer); len(got) != 0 {
		t.Fatalf("closed and empty, got %v", nums(got))
	}
	if q.put(&fetched{}) {
		t.Error("put accepted after close")
	}
}

// TestBatchQueueBounded: put waits while the queue is full, and close
// releases a waiting put (which then refuses).
func TestBatchQueueBounded(t *testing.T) {
	q := newBatchQueue(2, 2, time.Hour)
	q.put(&fetched{message: message{num: 1}})
	q.put(&fetched{message: message{num: 2}})
	done := make(chan bool)
	go func() { done <- q.put(&fetched{message: message{num: 3}}) }()
	select {
	case <-done:
		t.Fatal("put did not wait on a full queue")
	case <-time.After(20 * time.Millisecond):
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	if got := nums(q.take(nil, timer)); len(got) != 2 {
		t.Fatalf("got %v", got)
	}
	if !<-done {
		t.Fatal("put refused after room was made")
	}
	q.put(&fetched{message: message{num: 4}})
	go func() { done <- q.put(&fetched{message: message{num: 5}}) }()
	time.Sleep(10 * time.Millisecond)
	q.close()
	if <-done {
		t.Error("a put waiting when the queue closed was accepted")
	}
	if got := nums(q.take(nil, timer)); len(got) != 2 || got[0] != 3 || got[1] != 4 {
		t.Fatalf("after close got %v, want what was put before", got)
	}
}

// TestBatchQueueConcurrent: a producer and a consumer, racing; every item
// arrives once, in order.
func TestBatchQueueConcurrent(t *testing.T) {
	const n = 5000
	q := newBatchQueue(16, 7, time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= n; i++ {
			q.put(&fetched{message: message{num: i}})
		}
		q.close()
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	next := 1
	for {
		b := q.take(nil, timer)
		if len(b) == 0 {
			break
		}
		if len(b) > 7 {
			t.Fatalf("batch of %d", len(b))
		}
		for _, f := range b {
			if f.num != next {
				t.Fatalf("got %d, want %d", f.num, next)
			}
			next++
		}
	}
	wg.Wait()
	if next != n+1 {
		t.Fatalf("%d items, want %d", next-1, n)
	}
}
