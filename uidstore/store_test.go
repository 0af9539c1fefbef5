package uidstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func open(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", "uids.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestRecordSeenPrune(t *testing.T) {
	s, _ := open(t)
	work := Key{"pop.example.com", 995, "me"}
	other := Key{"pop.example.com", 995, "you"}

	seen, err := s.Seen(work, []string{"a", "b"})
	if err != nil || !reflect.DeepEqual(seen, []bool{false, false}) {
		t.Fatalf("empty store: %v, %v", seen, err)
	}
	if err := s.Record(work, "a", "c"); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(work, "a"); err != nil { // twice is fine
		t.Fatal(err)
	}
	seen, _ = s.Seen(work, []string{"a", "b", "c"})
	if !reflect.DeepEqual(seen, []bool{true, false, true}) {
		t.Fatalf("Seen = %v", seen)
	}
	// Mailboxes are separate.
	seen, _ = s.Seen(other, []string{"a"})
	if seen[0] {
		t.Fatal("UID leaked into another mailbox")
	}
	if err := s.Record(work, ""); err == nil {
		t.Error("empty UID recorded")
	}
	n, err := s.Prune(work, []string{"c", "z"})
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	seen, _ = s.Seen(work, []string{"a", "c"})
	if !reflect.DeepEqual(seen, []bool{false, true}) {
		t.Fatalf("after prune: %v", seen)
	}
	if n, _ := s.Prune(other, nil); n != 0 {
		t.Errorf("prune of an unknown mailbox removed %d", n)
	}
}

func TestPruneMany(t *testing.T) {
	s, _ := open(t)
	k := Key{"h", 110, "u"}
	var all, half []string
	for i := 0; i < 5000; i++ {
		u := fmt.Sprintf("uid-%05d", i)
		all = append(all, u)
		if i%2 == 0 {
			half = append(half, u)
		}
	}
	if err := s.Record(k, all...); err != nil {
		t.Fatal(err)
	}
	n, err := s.Prune(k, half)
	if err != nil || n != 2500 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	if c, _ := s.Count(k); c != 2500 {
		t.Fatalf("Count = %d", c)
	}
}

func TestPersistsAcrossOpen(t *testing.T) {
	s, path := open(t)
	k := Key{"h", 110, "u"}
	s.Record(k, "x")
	s.Close()
	s2, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if seen, _ := s2.Seen(k, []string{"x"}); !seen[0] {
		t.Fatal("UID lost across reopen")
	}
}

func TestLocked(t *testing.T) {
	_, path := open(t)
	start := time.Now()
	_, err := Open(path, 200*time.Millisecond)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second {
		t.Errorf("waited %v, want about 200ms", d)
	}
}
