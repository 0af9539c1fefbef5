package fetch

// The fault-injection suite (make test-faults): every case breaks a poll
// in one way, then lets clean polls run, and checks that nothing was lost
// and, for a Maildir, that nothing was delivered twice.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// maildirMessages returns the bodies in a Maildir's new/ and cur/, the
// Received field removed, sorted; a message delivered twice is there
// twice.
func maildirMessages(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, stripReceived(string(data)))
		}
	}
	sort.Strings(out)
	return out
}

// exactlyOnce checks got (sorted bodies) against want: nothing missing,
// nothing twice, nothing else.
func exactlyOnce(t *testing.T, got []string, want []pop3test.Message) {
	t.Helper()
	count := map[string]int{}
	for _, g := range got {
		count[g]++
	}
	lost, dups := 0, 0
	for _, m := range want {
		switch n := count[string(m.Data)]; {
		case n == 0:
			lost++
		case n > 1:
			dups += n - 1
		}
		delete(count, string(m.Data))
	}
	if lost > 0 || dups > 0 || len(count) > 0 {
		t.Errorf("%d of %d messages lost, %d duplicates, %d unknown", lost, len(want), dups, len(count))
	}
}

// pollAfterFault polls into d, waiting while the server still holds the
// mailbox for the broken session: a server notices a client gone only
// when it next reads (pop3test and Dovecot alike), and answers [IN-USE]
// until then.
func (f *fixture) pollAfterFault(d deliver.Deliverer) (Stats, error) {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := Poll(context.Background(), f.acct, f.store, d, nil)
		var fe *Error
		if !errors.As(err, &fe) || fe.Kind != KindLocked || time.Now().After(deadline) {
			return st, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settle polls without faults until a poll succeeds (at most 3), and then
// checks that every message is in the Maildir exactly once, the server is
// empty, and no pending record or temporary file is left.
func (f *fixture) settle(msgs []pop3test.Message) {
	f.t.Helper()
	f.srv.SetFaults()
	var err error
	for i := 0; i < 3; i++ {
		if _, err = f.pollAfterFault(f.md); err == nil {
			break
		}
	}
	if err != nil {
		f.t.Fatalf("clean polls after the fault: %v", err)
	}
	exactlyOnce(f.t, maildirMessages(f.t, f.dir), msgs)
	if n := len(f.srv.Messages()); n != 0 && !f.acct.Keep {
		f.t.Errorf("%d messages left on the server", n)
	}
	if ps, _ := f.store.Pending(f.acct.Key()); len(ps) != 0 {
		f.t.Errorf("%d pending records left", len(ps))
	}
	if tmp, _ := os.ReadDir(filepath.Join(f.dir, "tmp")); len(tmp) != 0 {
		f.t.Errorf("%d files left in tmp/", len(tmp))
	}
}

// faultMessages are 20 messages of a few hundred octets.
func faultMessages() []pop3test.Message {
	msgs := testMessages(20)
	for i := range msgs {
		msgs[i].Data = append(msgs[i].Data, []byte(strings.Repeat("padding line\n", 20))...)
	}
	return msgs
}

// TestFaultCapaHangUpRecovers: the connection cut at CAPA. popfetch
// connects again without CAPA, delivers everything once, and deletes it.
func TestFaultCapaHangUpRecovers(t *testing.T) {
	msgs := faultMessages()
	f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
	f.srv.SetFaults(pop3test.Fault{Command: "CAPA", Nth: 1, Action: pop3test.Drop})
	st, err := f.poll()
	if err != nil || st.Delivered != 20 || st.Deleted != 20 || f.srv.Sessions() != 2 {
		t.Fatalf("%+v, %v, %d sessions", st, err, f.srv.Sessions())
	}
	f.assertDelivered(msgs)
}

// TestFaultConnectionCut cuts the connection at every step of a session,
// with and without pipelining.
func TestFaultConnectionCut(t *testing.T) {
	drop := func(cmd string, nth int) pop3test.Fault {
		return pop3test.Fault{Command: cmd, Nth: nth, Action: pop3test.Drop}
	}
	dropAfter := func(cmd string, nth, bytes int) pop3test.Fault {
		return pop3test.Fault{Command: cmd, Nth: nth, Action: pop3test.DropAfter, Bytes: bytes}
	}
	tests := []struct {
		name  string
		fault pop3test.Fault
		// deletedAnyway: the server carried out the deletions, and only
		// the reply was lost.
		deletedAnyway bool
	}{
		// A hang-up at CAPA is taken for a server that does not know
		// CAPA: popfetch connects again without it (TestQuirkHangUpAtCapa)
		// and the poll succeeds; see TestFaultCapaHangUpRecovers.
		{"at the greeting", drop("GREETING", 1), false},
		{"at USER", drop("USER", 1), false},
		{"at PASS", drop("PASS", 1), false},
		{"at UIDL", drop("UIDL", 1), false},
		{"in the UIDL listing", dropAfter("UIDL", 1, 40), false},
		{"at LIST", drop("LIST", 1), false},
		{"in the LIST listing", dropAfter("LIST", 1, 30), false},
		{"at the first RETR", drop("RETR", 1), false},
		{"in the middle of RETR 1", dropAfter("RETR", 1, 60), false},
		{"in the middle of RETR 7", dropAfter("RETR", 7, 200), false},
		{"at RETR 20, the last", drop("RETR", 20), false},
		{"after the status line of RETR 12", dropAfter("RETR", 12, 15), false},
		{"between RETR and DELE", drop("DELE", 1), false},
		{"during the DELE batch", drop("DELE", 9), false},
		{"before the reply to QUIT, nothing deleted", drop("QUIT", 1), false},
		{"before the reply to QUIT, deletions done", dropAfter("QUIT", 1, 0), true},
	}
	for _, pipelining := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/pipelining=%v", tt.name, pipelining), func(t *testing.T) {
				msgs := faultMessages()
				f := newFixture(t, pop3test.Config{Pipelining: pipelining}, msgs)
				f.acct.SizeLimit = 1 << 20 // so that LIST is asked for
				f.srv.SetFaults(tt.fault)
				_, err := f.poll()
				var fe *Error
				if !errors.As(err, &fe) || (fe.Kind != KindNetwork && fe.Kind != KindProtocol) {
					t.Fatalf("faulted poll: %v, want a network or protocol error", err)
				}
				if left := len(f.srv.Messages()); left != 20 && !tt.deletedAnyway {
					t.Fatalf("%d messages left on the server after a cut session, want 20", left)
				}
				retrBefore := f.srv.Count("RETR")
				delivered := len(maildirMessages(t, f.dir))
				f.settle(msgs)
				// What the cut session delivered is not fetched again.
				if again := f.srv.Count("RETR") - retrBefore; again != 20-delivered {
					t.Errorf("the clean poll fetched %d messages, want %d", again, 20-delivered)
				}
			})
		}
	}
}

// TestFaultErrReplies answers -ERR at each command, and with the response
// codes of RFC 2449 and RFC 3206.
func TestFaultErrReplies(t *testing.T) {
	reply := func(cmd string, nth int, text string) pop3test.Fault {
		return pop3test.Fault{Command: cmd, Nth: nth, Action: pop3test.Reply, Reply: text}
	}
	tests := []struct {
		name      string
		fault     pop3test.Fault
		kind      Kind // of the faulted poll's error; -1: no error
		temporary bool
		// refetch: messages the clean poll must fetch again, beyond
		// those the faulted poll did not deliver (none ever).
	}{
		{"greeting", reply("GREETING", 1, "-ERR go away"), KindServer, false},
		{"CAPA (an RFC 1939 server)", reply("CAPA", 1, "-ERR unknown command"), -1, false},
		{"USER", reply("USER", 1, "-ERR no such user"), KindAuth, false},
		{"PASS", reply("PASS", 1, "-ERR bad password"), KindAuth, false},
		{"PASS [AUTH]", reply("PASS", 1, "-ERR [AUTH] bad password"), KindAuth, false},
		{"PASS [IN-USE]", reply("PASS", 1, "-ERR [IN-USE] mailbox locked"), KindLocked, true},
		{"PASS [LOGIN-DELAY]", reply("PASS", 1, "-ERR [LOGIN-DELAY] wait"), KindServer, true},
		{"PASS [SYS/TEMP]", reply("PASS", 1, "-ERR [SYS/TEMP] disk full"), KindServer, true},
		{"PASS [SYS/PERM]", reply("PASS", 1, "-ERR [SYS/PERM] mailbox broken"), KindServer, false},
		{"UIDL", reply("UIDL", 1, "-ERR not now"), KindServer, false},
		{"LIST", reply("LIST", 1, "-ERR not now"), KindServer, false},
		{"RETR 3", reply("RETR", 3, "-ERR cannot read message"), KindServer, false},
		{"RETR 3 [SYS/TEMP]", reply("RETR", 3, "-ERR [SYS/TEMP] try later"), KindServer, true},
		{"DELE 2", reply("DELE", 2, "-ERR cannot delete"), KindServer, false},
		{"QUIT", reply("QUIT", 1, "-ERR deletions failed"), KindServer, false},
	}
	for _, pipelining := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/pipelining=%v", tt.name, pipelining), func(t *testing.T) {
				msgs := faultMessages()
				f := newFixture(t, pop3test.Config{Pipelining: pipelining}, msgs)
				f.acct.SizeLimit = 1 << 20
				f.srv.SetFaults(tt.fault)
				_, err := f.poll()
				var fe *Error
				switch {
				case tt.kind < 0 && err != nil:
					t.Fatalf("faulted poll: %v, want success", err)
				case tt.kind >= 0 && (!errors.As(err, &fe) || fe.Kind != tt.kind):
					t.Fatalf("faulted poll: %v, want %v", err, tt.kind)
				case tt.kind >= 0 && fe.Temporary() != tt.temporary:
					t.Errorf("Temporary() = %v, want %v (%v)", fe.Temporary(), tt.temporary, err)
				}
				retrBefore := f.srv.Count("RETR")
				delivered := len(maildirMessages(t, f.dir))
				f.settle(msgs)
				if again := f.srv.Count("RETR") - retrBefore; again != 20-delivered {
					t.Errorf("the clean poll fetched %d messages, want %d", again, 20-delivered)
				}
			})
		}
	}
}

// mountTmpfs mounts a tmpfs of size at a new directory, for the cases of
// a full or read-only file system. It needs root; under CI it must run.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must run the file-system faults, which mount a tmpfs: %v", err)
		}
		t.Skipf("SKIPPED: mounting a tmpfs needs root: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func remount(t *testing.T, dir string, flags uintptr, data string) {
	t.Helper()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_REMOUNT|flags, data); err != nil {
		t.Fatal(err)
	}
}

// useMaildir points the fixture at a Maildir in dir.
func (f *fixture) useMaildir(dir string) {
	f.t.Helper()
	md, err := deliver.NewMaildir(dir)
	if err != nil {
		f.t.Fatal(err)
	}
	f.dir, f.md = dir, md
}

// TestFaultMaildirFull fills the file system under the Maildir: the poll
// stops after a few failed deliveries, keeps the rest on the server, and
// once there is room the next poll delivers them, each once.
func TestFaultMaildirFull(t *testing.T) {
	mnt := mountTmpfs(t, "256k")
	msgs := testMessages(60)
	for i := range msgs {
		msgs[i].Data = append(msgs[i].Data, []byte(strings.Repeat("x", 8000)+"\n")...)
	}
	f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
	f.useMaildir(filepath.Join(mnt, "Mail"))
	st, err := f.poll()
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindDelivery || !fe.Temporary() {
		t.Fatalf("poll on a full file system: %v, want a temporary delivery failure", err)
	}
	// What was delivered is kept on the server too (no DELE after a
	// fatal failure); the next poll deletes it without fetching it.
	onServer := len(f.srv.Messages())
	inMaildir := len(maildirMessages(t, f.dir))
	if st.Delivered == 0 || inMaildir != st.Delivered || onServer != 60 {
		t.Fatalf("%d delivered (stats %d), %d on the server: want a partial delivery and all kept", inMaildir, st.Delivered, onServer)
	}
	remount(t, mnt, 0, "size=16m")
	f.settle(msgs)
}

// TestFaultMaildirReadOnly: a Maildir on a read-only file system takes
// nothing, and the server keeps everything.
func TestFaultMaildirReadOnly(t *testing.T) {
	mnt := mountTmpfs(t, "16m")
	msgs := faultMessages()
	f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
	f.useMaildir(filepath.Join(mnt, "Mail"))
	remount(t, mnt, unix.MS_RDONLY, "")
	_, err := f.poll()
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindDelivery {
		t.Fatalf("poll into a read-only Maildir: %v, want a delivery failure", err)
	}
	if n := len(f.srv.Messages()); n != 20 {
		t.Fatalf("%d messages left on the server, want 20", n)
	}
	remount(t, mnt, 0, "")
	f.settle(msgs)
}

// TestFaultMaildirDeleted removes the Maildir (moves it away) in the
// middle of a fetch. Messages committed before are the user's to lose;
// the rest stay on the server and arrive, once, in the Maildir made anew.
func TestFaultMaildirDeleted(t *testing.T) {
	for _, pipelining := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			msgs := faultMessages()
			var f *fixture
			moved := filepath.Join(t.TempDir(), "moved")
			var once sync.Once
			cfg := pop3test.Config{Pipelining: pipelining, Hook: func(line string) {
				if line == "RETR 10" {
					once.Do(func() {
						if err := os.Rename(f.dir, moved); err != nil {
							t.Error(err)
						}
					})
				}
			}}
			f = newFixture(t, cfg, msgs)
			if _, err := f.poll(); err == nil {
				t.Fatal("a poll into a Maildir that vanished succeeded")
			}
			before := maildirMessages(t, moved)
			onServer := len(f.srv.Messages())
			if len(before)+onServer < 20 {
				t.Fatalf("%d in the moved Maildir, %d on the server: messages lost", len(before), onServer)
			}
			f.useMaildir(f.dir) // as the next run does: made anew
			f.srv.SetFaults()
			if _, err := f.pollAfterFault(f.md); err != nil {
				t.Fatal(err)
			}
			after := maildirMessages(t, f.dir)
			all := append(append([]string{}, before...), after...)
			sort.Strings(all)
			// Nothing lost across both Maildirs; none twice in the new one.
			count := map[string]int{}
			for _, m := range all {
				count[m]++
			}
			for _, m := range msgs {
				if count[string(m.Data)] == 0 {
					t.Errorf("lost: %.30q", m.Data)
				}
			}
			seen := map[string]bool{}
			for _, m := range after {
				if seen[m] {
					t.Errorf("twice in the new Maildir: %.30q", m)
				}
				seen[m] = true
			}
			if n := len(f.srv.Messages()); n != 0 {
				t.Errorf("%d messages left on the server", n)
			}
		})
	}
}

// mdaScript writes a shell script to use as an MDA.
func mdaScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mda.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFaultMDA runs an MDA that fails in each way an MDA can: the
// message stays on the server, and a working MDA then gets each once.
func TestFaultMDA(t *testing.T) {
	tests := []struct {
		name      string
		script    string
		timeout   time.Duration
		temporary bool
	}{
		{"exit 75", "cat >/dev/null; exit 75", 0, true},
		{"exit 1", "cat >/dev/null; exit 1", 0, false},
		{"hangs past its timeout", "sleep 30", 300 * time.Millisecond, true},
		{"killed by a signal", "head -c 10 >/dev/null; kill -9 $$", 0, false},
		{"reads only part of its input, exit 0", "head -c 10 >/dev/null", 0, false},
		{"fails on message 3 only", `grep -q '^Subject: message 3$' && exit 75; exit 0`, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := testMessages(5)
			f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
			out := t.TempDir()
			bad := &deliver.MDA{Argv: []string{mdaScript(t, tt.script)}, Timeout: tt.timeout}
			_, err := Poll(context.Background(), f.acct, f.store, bad, nil)
			var fe *Error
			if !errors.As(err, &fe) || fe.Kind != KindDelivery || fe.Temporary() != tt.temporary {
				t.Fatalf("poll with the failing MDA: %v, want a delivery failure, temporary %v", err, tt.temporary)
			}
			accepted, want := 0, msgs
			if tt.name == "fails on message 3 only" {
				accepted, want = 4, msgs[2:3] // the script took the others (and dropped them)
			}
			if n := len(f.srv.Messages()); n != 5-accepted {
				t.Fatalf("%d messages on the server, want %d", n, 5-accepted)
			}
			good := &deliver.MDA{Argv: []string{mdaScript(t, `cat > "$(mktemp `+out+`/msg.XXXXXX)"`)}}
			if st, err := f.pollAfterFault(good); err != nil || st.Delivered != 5-accepted {
				t.Fatalf("poll with a working MDA: %+v, %v", st, err)
			}
			entries, _ := os.ReadDir(out)
			var got []string
			for _, e := range entries {
				data, _ := os.ReadFile(filepath.Join(out, e.Name()))
				got = append(got, stripReceived(string(data)))
			}
			sort.Strings(got)
			exactlyOnce(t, got, want)
			if n := len(f.srv.Messages()); n != 0 {
				t.Errorf("%d messages left on the server", n)
			}
		})
	}
}

// TestFaultHostileServer: sizes that lie, a message larger than its size,
// a UID used twice, and UIDs that break RFC 1939's rules.
func TestFaultHostileServer(t *testing.T) {
	t.Run("LIST sizes lie", func(t *testing.T) {
		msgs := faultMessages()
		for i := range msgs {
			msgs[i].ListSize = []int{1, 5, 100000, 3}[i%4] // smaller and larger
		}
		f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
		f.acct.SizeLimit = 50000 // the "large" ones are left on the server, by their word
		st, err := f.poll()
		if err != nil || st.Delivered != 15 || st.Skipped != 5 {
			t.Fatalf("%+v, %v", st, err)
		}
		f.acct.SizeLimit = 0
		f.settle(msgs)
	})
	t.Run("a message larger than its LIST size", func(t *testing.T) {
		msgs := testMessages(5)
		msgs[2].Data = append(msgs[2].Data, []byte(strings.Repeat("much more than it said\n", 50000))...)
		msgs[2].ListSize = 100
		f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
		f.settle(msgs) // delivered whole, byte for byte
	})
	// refused: a listing the poll must refuse, touching nothing.
	refused := func(t *testing.T, msgs []pop3test.Message) {
		f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
		_, err := f.poll()
		var fe *Error
		if !errors.As(err, &fe) || fe.Kind != KindProtocol {
			t.Fatalf("got %v, want a protocol error", err)
		}
		if f.srv.Count("RETR") != 0 || f.srv.Count("DELE") != 0 || len(f.srv.Messages()) != len(msgs) {
			t.Errorf("fetched or deleted: RETR %d DELE %d", f.srv.Count("RETR"), f.srv.Count("DELE"))
		}
	}
	t.Run("the same UID twice", func(t *testing.T) {
		msgs := testMessages(5)
		msgs[3].UID = msgs[1].UID
		refused(t, msgs)
	})
	t.Run("a UIDL line past the 512 octets of RFC 2449", func(t *testing.T) {
		msgs := testMessages(3)
		msgs[1].UID = strings.Repeat("u", 600)
		refused(t, msgs)
	})
	t.Run("UIDs with spaces, non-ASCII octets and 500 characters", func(t *testing.T) {
		msgs := testMessages(4)
		msgs[0].UID = "uid with spaces"
		msgs[1].UID = "uid-\xc3\xa9\xff\x01"
		msgs[2].UID = strings.Repeat("u", 500)
		msgs[3].UID = strings.Repeat("\xe2\x82\xac", 166) // 498 octets
		f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
		f.acct.Keep = true
		if st, err := f.poll(); err != nil || st.Delivered != 4 {
			t.Fatalf("first poll: %+v, %v", st, err)
		}
		// Recognised again: nothing new.
		if st, err := f.poll(); err != nil || st.New != 0 {
			t.Fatalf("second poll: %+v, %v", st, err)
		}
		f.acct.Keep = false
		f.settle(msgs)
		if n := f.srv.Count("RETR"); n != 4 {
			t.Errorf("%d RETR, want 4", n)
		}
	})
}
