//go:build linux

package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
	md := t.TempDir()
	for _, d := range []string{"new", "cur", "tmp"} {
		if err := os.Mkdir(filepath.Join(md, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
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
