package uidstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
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

func TestPending(t *testing.T) {
	s, path := open(t)
	k := Key{"h", 995, "u"}
	other := Key{"h", 995, "v"}
	if ps, err := s.Pending(k); err != nil || ps != nil {
		t.Fatalf("empty store: %v, %v", ps, err)
	}
	in := []Pending{
		{UID: "b", Dir: "/home/me/Mail", Name: "1.M1P2Q3.host"},
		{UID: "a", Dir: "/home/me/Mail", Name: "1.M1P2Q4.host"},
		{UID: "c d\xff", Dir: "/x", Name: "n"},
	}
	if err := s.Pend(k, in); err != nil {
		t.Fatal(err)
	}
	if err := s.Pend(other, []Pending{{UID: "a", Dir: "/y", Name: "m"}}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Pending{{UID: "", Dir: "/x", Name: "n"}, {UID: "x", Dir: "", Name: "n"}, {UID: "x", Dir: "/x"}, {UID: "a\nb", Dir: "/x", Name: "n"}} {
		if err := s.Pend(k, []Pending{bad}); err == nil {
			t.Errorf("Pend(%+v) succeeded", bad)
		}
	}
	// A pending delivery is not a seen UID.
	if seen, _ := s.Seen(k, []string{"a"}); seen[0] {
		t.Error("a pending UID counts as seen")
	}
	s.Close()
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ps, err := s.Pending(k)
	for i := range ps {
		if time.Since(ps[i].Time) > time.Minute {
			t.Errorf("%s: recorded at %v", ps[i].UID, ps[i].Time)
		}
		ps[i].Time = time.Time{}
	}
	want := []Pending{in[1], in[0], in[2]} // UID order
	if err != nil || !reflect.DeepEqual(ps, want) {
		t.Fatalf("Pending = %+v, %v; want %+v", ps, err, want)
	}
	// Record clears the pending record; Unpend drops one.
	if err := s.Record(k, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Unpend(k, "b", "never"); err != nil {
		t.Fatal(err)
	}
	ps, _ = s.Pending(k)
	for i := range ps {
		ps[i].Time = time.Time{}
	}
	if !reflect.DeepEqual(ps, []Pending{in[2]}) {
		t.Fatalf("after Record and Unpend: %+v", ps)
	}
	if seen, _ := s.Seen(k, []string{"a", "b"}); !seen[0] || seen[1] {
		t.Errorf("Seen = %v", seen)
	}
	// Other mailboxes are untouched.
	if ps, _ := s.Pending(other); len(ps) != 1 {
		t.Errorf("other mailbox: %+v", ps)
	}
	if n, err := s.ForgetAll(k); err != nil || n != 1 {
		t.Fatalf("ForgetAll = %d, %v", n, err)
	}
	if ps, _ := s.Pending(k); ps != nil {
		t.Errorf("ForgetAll left pending records: %+v", ps)
	}
	if ps, _ := s.Pending(other); len(ps) != 1 {
		t.Errorf("ForgetAll of one mailbox touched another: %+v", ps)
	}
}

func TestEachAndForget(t *testing.T) {
	s, _ := open(t)
	k := Key{"h", 995, "u"}
	long := strings.Repeat("é", 250) // 500 octets, not ASCII
	before := time.Now().Add(-time.Second)
	if err := s.Record(k, "b", "a", "with space", long); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := s.Each(k, func(uid string, first time.Time) error {
		if first.Before(before) || first.After(time.Now().Add(time.Second)) {
			t.Errorf("%q first seen %v", uid, first)
		}
		got = append(got, uid)
		return nil
	})
	if err != nil || !reflect.DeepEqual(got, []string{"a", "b", "with space", long}) {
		t.Fatalf("Each = %q, %v", got, err)
	}
	stop := errors.New("stop")
	if err := s.Each(k, func(string, time.Time) error { return stop }); err != stop {
		t.Errorf("Each did not pass on fn's error: %v", err)
	}
	n, err := s.Forget(k, "a", "not there", long)
	if err != nil || n != 2 {
		t.Fatalf("Forget = %d, %v", n, err)
	}
	if seen, _ := s.Seen(k, []string{"a", "b", long}); !reflect.DeepEqual(seen, []bool{false, true, false}) {
		t.Errorf("after Forget: %v", seen)
	}
	if n, err := s.ForgetAll(Key{"nowhere", 1, "x"}); err != nil || n != 0 {
		t.Errorf("ForgetAll of an unknown mailbox = %d, %v", n, err)
	}
	if err := s.Record(k, strings.Repeat("x", 40000)); err == nil {
		t.Error("a UID longer than a key may be was recorded")
	}
}

// TestPendingKinds: a record of another target's kind keeps its kind, and
// a Maildir's record keeps the layout written before there were kinds, so
// existing stores open and read the same.
func TestPendingKinds(t *testing.T) {
	now := time.Unix(1700000000, 0)
	for _, p := range []Pending{
		{UID: "1", Dir: "/m", Name: "n"},
		{UID: "2", Kind: "imap", Dir: "imaps://u@h:993/INBOX", Name: "k\x00\xff"},
		{UID: "3", Kind: "gmail", Dir: "me@gmail.com", Name: "x"},
	} {
		v := encodePending(p, now)
		if p.Kind == "" && v[0] != recordVersion {
			t.Errorf("%+v: version %d, want the old layout", p, v[0])
		}
		got, err := decodePending(p.UID, v)
		if !got.Time.Equal(now) {
			t.Errorf("%+v: time %v, want %v", p, got.Time, now)
		}
		got.Time = time.Time{}
		if err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("round trip of %+v: %+v, %v", p, got, err)
		}
		for i := 1; i < len(v); i++ {
			if _, err := decodePending(p.UID, v[:i]); err == nil && i < 10+len(p.Kind) {
				t.Errorf("%+v cut to %d octets decoded", p, i)
			}
		}
	}
	// The layout of a record written by an older popfetch.
	old := append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 2}, "/mname"...)
	if got, err := decodePending("u", old); err != nil || got != (Pending{UID: "u", Dir: "/m", Name: "name", Time: time.Unix(1, 0)}) {
		t.Errorf("old record: %+v, %v", got, err)
	}
	for _, bad := range [][]byte{{2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 'a'}, {3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}} {
		if _, err := decodePending("u", bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}
