//go:build linux

package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// TestFloorFetchesEverything: the floor the bench compares popfetch with
// must do the work it claims, or its figures mean nothing: every message
// in the Maildir's new/, unstuffed, with LF line endings, and the mailbox
// emptied.
func TestFloorFetchesEverything(t *testing.T) {
	long := strings.Repeat("x", 70<<10) // a line longer than the reader's buffer
	msgs := []pop3test.Message{
		{UID: "a", Data: []byte("Subject: one\n\nbody\n")},
		{UID: "b", Data: []byte("Subject: two\n\n.leading dot\n..two dots\n.\n")},
		{UID: "c", Data: []byte("Subject: three\n\n" + long + "\n.after a long line\n")},
	}
	srv, err := pop3test.NewServer(pop3test.Config{User: "u", Password: "p", Pipelining: true}, msgs...)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	md := newMaildir(t)
	n, err := run(srv.Addr(), "u", "p", md)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(msgs) {
		t.Errorf("fetched %d messages, want %d", n, len(msgs))
	}
	entries, err := os.ReadDir(filepath.Join(md, "new"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(md, "new", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(b))
	}
	var want []string
	for _, m := range msgs {
		want = append(want, string(m.Data))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("delivered %d messages that differ from the %d sent", len(got), len(want))
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Errorf("got %.80q, want %.80q", got[i], want[i])
			}
		}
	}
	if left := len(srv.Messages()); left != 0 {
		t.Errorf("%d messages left on the server", left)
	}
}

// TestFloorBadLogin: a refused login is an error, not an empty mailbox.
func TestFloorBadLogin(t *testing.T) {
	srv, err := pop3test.NewServer(pop3test.Config{User: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := run(srv.Addr(), "u", "wrong", t.TempDir()); err == nil || !strings.Contains(err.Error(), "PASS") {
		t.Errorf("run with a wrong password: %v, want an error naming PASS", err)
	}
}

// TestFloorCRLFAtBufferEdge: a line longer than the reader's 64 KiB
// buffer whose CR ends one piece and LF starts the next is still written
// with LF alone (found by a cold review), whatever the line's length
// around the edge.
func TestFloorCRLFAtBufferEdge(t *testing.T) {
	for _, n := range []int{65533, 65534, 65535, 65536, 65537, 2*65536 - 1} {
		data := "Subject: s\n\n" + strings.Repeat("x", n) + "\nend\n"
		srv, err := pop3test.NewServer(pop3test.Config{User: "u", Password: "p", Pipelining: true},
			pop3test.Message{UID: "a", Data: []byte(data)})
		if err != nil {
			t.Fatal(err)
		}
		md := newMaildir(t)
		if _, err := run(srv.Addr(), "u", "p", md); err != nil {
			t.Fatal(err)
		}
		srv.Close()
		es, err := os.ReadDir(filepath.Join(md, "new"))
		if err != nil || len(es) != 1 {
			t.Fatalf("line of %d: %d files in new/ (%v)", n, len(es), err)
		}
		b, err := os.ReadFile(filepath.Join(md, "new", es[0].Name()))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != data {
			t.Errorf("line of %d: got %d bytes, want %d; CR kept: %v", n, len(b), len(data), strings.Contains(string(b), "\r"))
		}
	}
}

// TestFloorFailureDeletesNothing: the Go floor sends QUIT, which makes its
// DELEs take effect, only once every message is on disk. A delivery that
// fails (here new/ is missing) leaves the mailbox whole.
func TestFloorFailureDeletesNothing(t *testing.T) {
	srv, err := pop3test.NewServer(pop3test.Config{User: "u", Password: "p", Pipelining: true},
		pop3test.Message{UID: "a", Data: []byte("Subject: a\n\na\n")},
		pop3test.Message{UID: "b", Data: []byte("Subject: b\n\nb\n")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := run(srv.Addr(), "u", "p", filepath.Join(t.TempDir(), "no-such-maildir")); err == nil {
		t.Fatal("run into a missing Maildir: no error")
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.Locked() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if left := len(srv.Messages()); left != 2 || srv.Count("QUIT") != 0 {
		t.Errorf("after a failed run: %d messages left (want 2), %d QUITs (want 0)", left, srv.Count("QUIT"))
	}
}

// newMaildir returns an empty Maildir in a temporary directory.
func newMaildir(t *testing.T) string {
	t.Helper()
	md := t.TempDir()
	for _, d := range []string{"new", "cur", "tmp"} {
		if err := os.Mkdir(filepath.Join(md, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return md
}
