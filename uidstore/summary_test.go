package uidstore

import (
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestSummary(t *testing.T) {
	s, _ := open(t)
	work := Key{"pop.example.com", 995, "me"}
	other := Key{"pop.example.com", 995, "you"}
	if _, ok, err := s.Summary(work); ok || err != nil {
		t.Fatalf("empty store: %v %v", ok, err)
	}
	if err := s.DropSummary(work); err != nil {
		t.Fatal(err)
	}
	want := Summary{Count: 50000, Size: 1 << 33, FirstUID: "first", LastUID: "§last%20uid", Polls: 3,
		Config: 0xfeedface12345678, NoProbe: true, At: time.Unix(1_800_000_000, 0)}
	for _, k := range []Key{work, other} {
		if err := s.SetSummary(k, want); err != nil {
			t.Fatal(err)
		}
	}
	got, ok, err := s.Summary(work)
	if !ok || err != nil || got != want {
		t.Fatalf("got %+v %v %v, want %+v", got, ok, err, want)
	}
	if err := s.DropSummary(work); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Summary(work); ok {
		t.Fatal("DropSummary left the summary")
	}

	// Forgetting UIDs drops the summary: it would say their messages
	// are delivered. Forgetting a UID the mailbox does not have too.
	s.Record(work, "a", "b")
	for _, forget := range []func() error{
		func() error { _, err := s.Forget(work, "a"); return err },
		func() error { _, err := s.Forget(work, "never-recorded"); return err },
		func() error { _, err := s.ForgetAll(work); return err },
	} {
		s.SetSummary(work, want)
		if err := forget(); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := s.Summary(work); ok {
			t.Error("forgetting UIDs left the summary")
		}
	}
	if _, ok, _ := s.Summary(other); !ok {
		t.Error("another mailbox lost its summary")
	}

	// A damaged record is no summary.
	s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(summaryBucket).Put(other.bucket(), []byte{summaryVersion, 0, 0x80})
	})
	if _, ok, err := s.Summary(other); ok || err != nil {
		t.Errorf("damaged record: %v %v", ok, err)
	}
}

func FuzzDecodeSummary(f *testing.F) {
	f.Add(encodeSummary(Summary{Count: 3, Size: 100, FirstUID: "a", LastUID: "c", At: time.Unix(5, 0)}))
	f.Add([]byte{summaryVersion, 0})
	f.Fuzz(func(t *testing.T, v []byte) {
		s, err := decodeSummary(v)
		if err != nil {
			return
		}
		if s2, err := decodeSummary(encodeSummary(s)); err != nil || s2 != s {
			t.Fatalf("round trip: %+v -> %+v, %v", s, s2, err)
		}
	})
}
