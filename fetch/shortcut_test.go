package fetch

import (
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// These tests check the no-new-mail shortcut (shortcut.go): when a poll
// may trust the summary the last clean poll left, and each case in which
// it must list in full instead.

func kept(uid, body string) pop3test.Message {
	return pop3test.Message{UID: uid, Data: []byte("Subject: " + uid + "\n\n" + body + "\n")}
}

// pollPath polls and says how the poll learned what is on the server:
// "shortcut" (STAT and UIDL n only), "full" (the listing only), or
// "probe+full" (the probes, then the listing).
func (f *fixture) pollPath() (Stats, string, error) {
	f.t.Helper()
	before := len(f.srv.Commands())
	st, err := f.poll()
	probed, listed := false, false
	for _, c := range f.srv.Commands()[before:] {
		probed = probed || strings.HasPrefix(c, "UIDL ")
		listed = listed || c == "UIDL"
	}
	path := map[[2]bool]string{{true, false}: "shortcut", {false, true}: "full", {true, true}: "probe+full", {false, false}: "none"}[[2]bool{probed, listed}]
	return st, path, err
}

func (f *fixture) wantPath(wantPath string, wantDelivered int) Stats {
	f.t.Helper()
	st, path, err := f.pollPath()
	if err != nil || path != wantPath || st.Delivered != wantDelivered {
		f.t.Fatalf("poll: %s, %+v, %v; want %s with %d delivered", path, st, err, wantPath, wantDelivered)
	}
	return st
}

func newKeptFixture(t *testing.T, cfg pop3test.Config, msgs []pop3test.Message) *fixture {
	t.Helper()
	f := newFixture(t, cfg, msgs)
	f.acct.Keep = true
	f.wantPath("full", len(msgs))
	return f
}

// TestShortcutNoNewMail: after a clean poll, a poll of the unchanged
// mailbox is STAT, UIDL 1 and UIDL n in one flight: four flights in all,
// no listing; new mail is asked for by number and fetched alone.
func TestShortcutNoNewMail(t *testing.T) {
	msgs := testMessages(50)
	f := newKeptFixture(t, pop3test.Config{Pipelining: true}, msgs)
	flights, before := f.srv.Flights(), len(f.srv.Commands())
	st := f.wantPath("shortcut", 0)
	if st.Messages != 50 || st.New != 0 {
		t.Errorf("%+v", st)
	}
	if got := strings.Join(f.srv.Commands()[before:], ","); !strings.Contains(got, "STAT,UIDL 1,UIDL 50,QUIT") {
		t.Errorf("commands %s", got)
	}
	if n := f.srv.Flights() - flights; n != 4 {
		t.Errorf("%d flights, want 4 (CAPA, USER+PASS, STAT+UIDL 1+UIDL 50, QUIT)", n)
	}
	more := []pop3test.Message{kept("new-1", "a"), kept("new-2", "bb")}
	f.srv.Add(more...)
	before = len(f.srv.Commands())
	if st := f.wantPath("shortcut", 2); st.Messages != 52 || st.New != 2 {
		t.Errorf("%+v", st)
	}
	if got := strings.Join(f.srv.Commands()[before:], ","); !strings.Contains(got, "UIDL 51,UIDL 52,LIST 51,LIST 52") {
		t.Errorf("commands %s", got)
	}
	f.wantPath("shortcut", 0)
	f.assertDelivered(append(msgs, more...))
}

// TestShortcutNoPipelining: without PIPELINING the probes go one at a
// time; a tail of more than two messages is listed in full.
func TestShortcutNoPipelining(t *testing.T) {
	msgs := testMessages(5)
	f := newKeptFixture(t, pop3test.Config{}, msgs)
	f.wantPath("shortcut", 0)
	msgs = append(msgs, kept("n1", "x"), kept("n2", "y"))
	f.srv.SetMailbox(msgs...)
	f.wantPath("shortcut", 2)
	msgs = append(msgs, kept("n3", "x"), kept("n4", "y"), kept("n5", "z"))
	f.srv.SetMailbox(msgs...)
	f.wantPath("probe+full", 3)
	f.wantPath("shortcut", 0)
	f.assertDelivered(msgs)
}

// TestShortcutFallbacks: each change the probes must catch makes the
// poll list in full, and the poll then delivers what is new, exactly once.
func TestShortcutFallbacks(t *testing.T) {
	base := testMessages(6)
	size := func(m pop3test.Message) int { return len(m.Data) }
	for _, c := range []struct {
		name   string
		cfg    pop3test.Config
		change func(f *fixture) []pop3test.Message // the new mailbox; what it holds is to be delivered
		path   string
		got    int // messages delivered by the poll after the change
	}{
		{"count shrank", pop3test.Config{}, func(f *fixture) []pop3test.Message {
			return append([]pop3test.Message(nil), base[1:]...)
		}, "probe+full", 0},
		{"shrank, then as many appended", pop3test.Config{}, func(f *fixture) []pop3test.Message {
			// Message 3 deleted, one of the same size appended: count and
			// octets are as before; message 6 is now the new one.
			m := append(append([]pop3test.Message(nil), base[:2]...), base[3:]...)
			return append(m, kept("uid-x", strings.Repeat("y", size(base[2])-len("Subject: uid-x\n\n\n"))))
		}, "probe+full", 1},
		{"octets changed, count stayed", pop3test.Config{}, func(f *fixture) []pop3test.Message {
			m := append([]pop3test.Message(nil), base...)
			m[2].Data = append([]byte(nil), "Subject: edited\n\nlonger than before\n"...)
			return m
		}, "probe+full", 0},
		{"first message replaced", pop3test.Config{}, func(f *fixture) []pop3test.Message {
			m := append([]pop3test.Message(nil), base...)
			m[0].UID = "uid-other"
			return m
		}, "probe+full", 1},
		{"old message replaced behind new ones", pop3test.Config{}, func(f *fixture) []pop3test.Message {
			// Message 4 replaced by one of the same size and two
			// appended: the tail's sizes do not add up.
			m := append([]pop3test.Message(nil), base...)
			m[3] = kept("uid-4x", strings.Repeat("z", size(base[3])-len("Subject: uid-4x\n\n\n")))
			return append(m, kept("t1", "a"), kept("t2", "b"))
		}, "probe+full", 3},
		{"new mail sorted first", pop3test.Config{Quirks: pop3test.Quirks{SortedByUID: true}}, func(f *fixture) []pop3test.Message {
			return append(append([]pop3test.Message(nil), base...), kept("aaa-first", "x"))
		}, "probe+full", 1},
		{"UIDs forgotten", pop3test.Config{}, func(f *fixture) []pop3test.Message {
			if _, err := f.store.Forget(f.acct.Key(), "uid-3"); err != nil {
				t.Fatal(err)
			}
			return base
		}, "full", 1},
		{"settings changed", pop3test.Config{}, func(f *fixture) []pop3test.Message {
			f.acct.SizeLimit = 1 << 20
			return append(append([]pop3test.Message(nil), base...), kept("n", "x"))
		}, "full", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newKeptFixture(t, c.cfg, base)
			f.wantPath("shortcut", 0)
			now := c.change(f)
			f.srv.SetMailbox(now...)
			f.wantPath(c.path, c.got)
			f.wantPath("shortcut", 0)
			var all []pop3test.Message
			seen := map[string]bool{}
			for _, m := range append(append([]pop3test.Message(nil), base...), now...) {
				if !seen[m.UID] {
					seen[m.UID] = true
					all = append(all, m)
				}
			}
			if c.name == "UIDs forgotten" {
				all = append(all, base[2]) // fetched again, as asked
			}
			f.assertDelivered(all)
		})
	}
}

// TestShortcutNoUIDLOne: a server that refuses UIDL n is listed in full,
// and not probed again for a while.
func TestShortcutNoUIDLOne(t *testing.T) {
	msgs := testMessages(3)
	f := newKeptFixture(t, pop3test.Config{Pipelining: true, Quirks: pop3test.Quirks{NoUIDLOne: true}}, msgs)
	f.wantPath("probe+full", 0)
	msgs = append(msgs, kept("n", "x"))
	f.srv.SetMailbox(msgs...)
	f.wantPath("full", 1)
	f.wantPath("full", 0)
	f.assertDelivered(msgs)
}

// TestShortcutExpireZero: a server that deletes what is retrieved (EXPIRE
// 0) is always listed in full.
func TestShortcutExpireZero(t *testing.T) {
	f := newKeptFixture(t, pop3test.Config{Quirks: pop3test.Quirks{Expire: "0"}}, testMessages(3))
	f.srv.SetMailbox(kept("n1", "x"), kept("n2", "y"), kept("n3", "z"))
	f.wantPath("full", 3)
}

// TestShortcutEveryNthPoll: a summary is trusted fullListingEvery-1 polls
// in a row; the next poll lists in full (and prunes).
func TestShortcutEveryNthPoll(t *testing.T) {
	f := newKeptFixture(t, pop3test.Config{Pipelining: true}, testMessages(4))
	// A UID recorded that is not on the server: a full listing prunes it,
	// a shortcut poll leaves it.
	if err := f.store.Record(f.acct.Key(), "imported"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < fullListingEvery; i++ {
		f.wantPath("shortcut", 0)
	}
	if n, _ := f.store.Count(f.acct.Key()); n != 5 {
		t.Errorf("%d UIDs recorded, want 5", n)
	}
	f.wantPath("full", 0)
	if n, _ := f.store.Count(f.acct.Key()); n != 4 {
		t.Errorf("%d UIDs recorded after the full listing, want 4", n)
	}
	f.wantPath("shortcut", 0)
}

// TestShortcutUncleanPolls: a poll that leaves new mail on the server
// (fetch_limit, size_limit, a dropped connection, a refused RETR) does
// not move the summary past it: the next poll asks for it again.
func TestShortcutUncleanPolls(t *testing.T) {
	base := testMessages(4)
	t.Run("fetch_limit", func(t *testing.T) {
		f := newKeptFixture(t, pop3test.Config{Pipelining: true}, base)
		f.acct.FetchLimit = 1
		f.wantPath("full", 0) // the settings changed
		msgs := append(append([]pop3test.Message(nil), base...), kept("a", "1"), kept("b", "2"), kept("c", "3"))
		f.srv.SetMailbox(msgs...)
		f.wantPath("shortcut", 1)
		f.wantPath("shortcut", 1)
		f.wantPath("shortcut", 1)
		f.wantPath("shortcut", 0)
		f.assertDelivered(msgs)
	})
	t.Run("size_limit", func(t *testing.T) {
		f := newKeptFixture(t, pop3test.Config{Pipelining: true}, base)
		f.acct.SizeLimit = 200
		f.wantPath("full", 0)
		big := kept("big", strings.Repeat("x", 300))
		f.srv.SetMailbox(append(append([]pop3test.Message(nil), base...), big, kept("small", "s"))...)
		if st := f.wantPath("shortcut", 1); st.Skipped != 1 {
			t.Errorf("%+v", st)
		}
		if st := f.wantPath("shortcut", 0); st.Skipped != 1 {
			t.Errorf("the skipped message was not looked at again: %+v", st)
		}
		f.acct.SizeLimit = 0
		f.wantPath("full", 1)
		f.wantPath("shortcut", 0)
	})
	t.Run("connection dropped", func(t *testing.T) {
		f := newKeptFixture(t, pop3test.Config{Pipelining: true}, base)
		msgs := append(append([]pop3test.Message(nil), base...), kept("a", "1"), kept("b", "2"), kept("c", "3"))
		f.srv.SetMailbox(msgs...)
		f.srv.SetFaults(pop3test.Fault{Command: "RETR", Nth: len(base) + 2, Action: pop3test.DropAfter, Bytes: 10})
		if _, _, err := f.pollPath(); err == nil {
			t.Fatal("no error")
		}
		f.wantPath("shortcut", 2)
		f.wantPath("shortcut", 0)
		f.assertDelivered(msgs)
	})
	t.Run("RETR refused", func(t *testing.T) {
		f := newKeptFixture(t, pop3test.Config{Pipelining: true}, base)
		msgs := append(append([]pop3test.Message(nil), base...), kept("a", "1"))
		f.srv.SetMailbox(msgs...)
		f.srv.SetFaults(pop3test.Fault{Command: "RETR", Nth: len(base) + 1, Action: pop3test.Reply, Reply: "-ERR try later"})
		if st, _, _ := f.pollPath(); st.Failed != 1 {
			t.Fatalf("%+v", st)
		}
		f.wantPath("shortcut", 1)
		f.assertDelivered(msgs)
	})
}

// TestShortcutOtherModes: delete mode, delete_after and fetch_all never
// trust a summary, and drop it before anything is deleted.
func TestShortcutOtherModes(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(a *Account)
	}{
		{"delete mode", func(a *Account) { a.Keep = false }},
		{"delete_after", func(a *Account) { a.DeleteAfter = 1 }},
		{"fetch_all", func(a *Account) { a.FetchAll = true }},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newKeptFixture(t, pop3test.Config{Pipelining: true}, testMessages(3))
			f.wantPath("shortcut", 0)
			c.set(f.acct)
			_, path, err := f.pollPath()
			if err != nil || path != "full" {
				t.Fatalf("%s, %v", path, err)
			}
			if _, ok, _ := f.store.Summary(f.acct.Key()); ok {
				t.Error("the summary outlived the poll")
			}
		})
	}
}

func TestShortcutConfigFingerprint(t *testing.T) {
	seen := map[uint64]string{}
	for name, set := range map[string]func(a *Account){
		"base":  func(a *Account) {},
		"size":  func(a *Account) { a.SizeLimit = 1 },
		"limit": func(a *Account) { a.FetchLimit = 1 },
		"dlt":   func(a *Account) { a.DeleteLargerThan = 1 },
	} {
		a := &Account{Keep: true}
		set(a)
		h := a.shortcutConfig()
		if other, dup := seen[h]; dup {
			t.Errorf("%s and %s have one fingerprint", name, other)
		}
		seen[h] = name
	}
}

// TestShortcutTailHostileSize: a size in the tail that is negative or
// would overflow the sum is doubt, and the full listing follows.
func TestShortcutTailHostileSize(t *testing.T) {
	for _, size := range []string{"-5", "9223372036854775807"} {
		t.Run("size "+size, func(t *testing.T) {
			msgs := testMessages(5)
			f := newKeptFixture(t, pop3test.Config{Pipelining: true}, msgs)
			f.srv.Add(kept("uid-6", "six"), kept("uid-7", "seven"))
			f.srv.SetFaults(pop3test.Fault{Command: "LIST", Action: pop3test.Reply, Reply: "+OK 6 " + size})
			st, path, err := f.pollPath()
			if err != nil || path != "probe+full" || st.Delivered != 2 {
				t.Fatalf("%s, %+v, %v; want the listing after the probes, 2 delivered", path, st, err)
			}
		})
	}
}
