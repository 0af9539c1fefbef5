package fetch

import (
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// TestPollDeleteAfter: with keep and delete_after, a message is deleted
// once it was first delivered that long ago, and not before.
func TestPollDeleteAfter(t *testing.T) {
	msgs := testMessages(4)
	f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
	f.acct.Keep, f.acct.DeleteAfter = true, 30*24*time.Hour
	key := f.acct.Key()
	// uid-1 delivered 31 days ago, uid-2 29 days ago; uid-3 and uid-4 are new.
	if err := f.store.RecordAt(key, time.Now().Add(-31*24*time.Hour), "uid-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.store.RecordAt(key, time.Now().Add(-29*24*time.Hour), "uid-2"); err != nil {
		t.Fatal(err)
	}
	st, err := f.poll()
	if err != nil || st.Delivered != 2 || st.Expired != 1 || st.Deleted != 1 {
		t.Fatalf("%+v, %v; want 2 delivered, 1 expired and deleted", st, err)
	}
	var left []string
	for _, m := range f.srv.Messages() {
		left = append(left, m.UID)
	}
	if strings.Join(left, " ") != "uid-2 uid-3 uid-4" {
		t.Errorf("server holds %v", left)
	}
	if f.srv.Count("RETR") != 2 {
		t.Errorf("%d RETR, want 2", f.srv.Count("RETR"))
	}
	// The next poll fetches nothing and deletes nothing; uid-1 is
	// forgotten, being gone from the server.
	st, err = f.poll()
	if err != nil || st.Delivered != 0 || st.Deleted != 0 {
		t.Fatalf("second poll: %+v, %v", st, err)
	}
	if seen, _ := f.store.Seen(key, []string{"uid-1", "uid-2"}); seen[0] || !seen[1] {
		t.Errorf("Seen(uid-1, uid-2) = %v", seen)
	}
}

// TestPollDeleteLargerThan: new messages over the limit are deleted
// without being fetched, with keep too; smaller ones are fetched.
func TestPollDeleteLargerThan(t *testing.T) {
	for _, keep := range []bool{false, true} {
		msgs := testMessages(4)
		msgs[1].Data = append(msgs[1].Data, []byte(strings.Repeat("x", 20000))...)
		msgs[3].Data = append(msgs[3].Data, []byte(strings.Repeat("y", 50000))...)
		for _, pipelining := range []bool{false, true} {
			f := newFixture(t, pop3test.Config{Pipelining: pipelining}, msgs)
			f.acct.Keep, f.acct.DeleteLargerThan, f.acct.SizeLimit = keep, 30000, 10000
			st, err := f.poll()
			// uid-2 (20 kB) is over size_limit: left; uid-4 (50 kB) is
			// over delete_larger_than: deleted unread.
			if err != nil || st.Delivered != 2 || st.Discarded != 1 || st.Skipped != 1 {
				t.Fatalf("keep %v pipelining %v: %+v, %v", keep, pipelining, st, err)
			}
			var left []string
			for _, m := range f.srv.Messages() {
				left = append(left, m.UID)
			}
			want := "uid-2"
			if keep {
				want = "uid-1 uid-2 uid-3"
			}
			if strings.Join(left, " ") != want {
				t.Errorf("keep %v: server holds %v, want %s", keep, left, want)
			}
			for _, c := range f.srv.Commands() {
				if c == "RETR 4" || c == "RETR 2" {
					t.Errorf("keep %v: %s sent", keep, c)
				}
			}
		}
	}
}

// TestPollFetchAll fetches messages delivered before again.
func TestPollFetchAll(t *testing.T) {
	msgs := testMessages(3)
	f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
	f.acct.Keep = true
	if st, err := f.poll(); err != nil || st.Delivered != 3 {
		t.Fatalf("first poll: %+v, %v", st, err)
	}
	f.acct.FetchAll = true
	if st, err := f.poll(); err != nil || st.Delivered != 3 || st.Deleted != 0 {
		t.Fatalf("fetch_all: %+v, %v", st, err)
	}
	if got := len(maildirMessages(t, f.dir)); got != 6 {
		t.Errorf("%d messages in the Maildir, want 6 (each twice, as asked)", got)
	}
	// fetch_all without keep: fetched again, then deleted.
	f.acct.Keep = false
	if st, err := f.poll(); err != nil || st.Delivered != 3 || st.Deleted != 3 {
		t.Fatalf("fetch_all, delete: %+v, %v", st, err)
	}
}
