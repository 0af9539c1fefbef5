package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// liar is a message the server lists at 100 octets and sends at size.
func liar(uid string, size int) pop3test.Message {
	return pop3test.Message{UID: uid, ListSize: 100,
		Data: append([]byte("Subject: "+uid+"\n\n"), bytes.Repeat([]byte("0123456789abcde\n"), size/16)...)}
}

// TestSizeLimitEnforcedOnOctetsRead: a server lists a message at 100
// octets and sends 2 MiB. With size_limit = 10 KiB the message is
// abandoned once past the limit and its slack (nothing of it delivered),
// stays on the server, is logged, and the rest of the mailbox arrives.
// The daemon (a Memo) does not download it again; with delete_larger_than
// it is deleted unread.
func TestSizeLimitEnforcedOnOctetsRead(t *testing.T) {
	msgs := testMessages(4)
	all := []pop3test.Message{msgs[0], msgs[1], liar("liar", 2<<20), msgs[2], msgs[3]}
	for _, pipelining := range []bool{false, true} {
		f := newFixture(t, pop3test.Config{Pipelining: pipelining}, all)
		f.acct.Keep = true
		f.acct.SizeLimit = 10 << 10
		var log logBuffer
		memo := &Memo{}
		st, err := f.quirkPoll(&log, memo)
		if err != nil || st.Delivered != 4 || st.Skipped != 1 {
			t.Fatalf("pipelining=%v: %+v, %v", pipelining, st, err)
		}
		f.assertDelivered(msgs)
		if !strings.Contains(log.String(), "larger than size_limit") || !strings.Contains(log.String(), "it has 2097") ||
			!strings.Contains(log.String(), "the server listed 100") || !strings.Contains(log.String(), "level=WARN") {
			t.Errorf("no warning that names the sizes:\n%s", log.String())
		}
		retr := f.srv.Count("RETR")
		if st, err := f.quirkPoll(nil, memo); err != nil || st.Skipped != 1 || f.srv.Count("RETR") != retr {
			t.Errorf("second poll: %+v, %v; RETR sent %d more times", st, err, f.srv.Count("RETR")-retr)
		}
		f.acct.DeleteLargerThan = 1 << 20
		if st, err := f.quirkPoll(nil, memo); err != nil || st.Discarded != 1 {
			t.Fatalf("delete_larger_than: %+v, %v", st, err)
		}
		if got := f.srv.Messages(); len(got) != 4 {
			t.Errorf("%d messages on the server, want 4 (the liar deleted unread)", len(got))
		}
		f.assertDelivered(msgs)
	}
}

// roomyMaildir is a Maildir that reports the free space given.
type roomyMaildir struct {
	*deliver.Maildir
	room int64
}

func (m roomyMaildir) FreeSpace() (int64, error) { return m.room, nil }

// TestFreeSpaceBoundsAMessage: without size_limit, a message that would
// take the target's file system below its reserve is abandoned before
// it does, the poll ends with a temporary delivery failure, and the
// server keeps the message.
func TestFreeSpaceBoundsAMessage(t *testing.T) {
	msgs := testMessages(2)
	f := newFixture(t, pop3test.Config{Pipelining: true}, append(msgs, liar("liar", 4<<20)))
	d := roomyMaildir{Maildir: f.md, room: 1 << 20}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := Poll(ctx, f.acct, f.store, d, nil)
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindDelivery || !fe.Temporary() || !strings.Contains(err.Error(), "reserve") {
		t.Fatalf("%+v, %v: want a temporary delivery failure naming the reserve", st, err)
	}
	if got := f.srv.Messages(); len(got) != 3 {
		t.Errorf("%d messages on the server, want 3", len(got))
	}
	for _, m := range f.delivered() {
		if strings.Contains(m, "Subject: liar") {
			t.Errorf("part of the oversized message was delivered")
		}
	}
}

// TestFreeSpaceRealFileSystem: the same on a real 24 MiB tmpfs (root
// only): a server that lists 100 octets and streams 40 MiB never fills
// the file system.
func TestFreeSpaceRealFileSystem(t *testing.T) {
	mnt := mountTmpfs(t, "24m")
	f := newFixture(t, pop3test.Config{Pipelining: true}, []pop3test.Message{liar("liar", 40<<20)})
	f.useMaildir(filepath.Join(mnt, "Mail"))
	_, err := f.poll()
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindDelivery {
		t.Fatalf("%v: want a delivery failure", err)
	}
	free, ferr := f.md.FreeSpace()
	if ferr != nil || free <= 0 {
		t.Errorf("the file system was filled: %d octets left beyond the reserve, %v", free, ferr)
	}
	for _, sub := range []string{"tmp", "new"} {
		if entries, _ := os.ReadDir(filepath.Join(mnt, "Mail", sub)); len(entries) != 0 {
			t.Errorf("%d files left in %s/", len(entries), sub)
		}
	}
}

// TestDribblingServer: a server that sends one octet every two seconds,
// inside the 3 s idle timeout, at the greeting, a status line, a listing
// line and the body of a message. Each poll ends as a network error within
// a few seconds, and nothing of the dribbled message is delivered.
func TestDribblingServer(t *testing.T) {
	dribble := func(cmd string, first int) pop3test.Fault {
		return pop3test.Fault{Command: cmd, Action: pop3test.Dribble, Delay: 2 * time.Second, Bytes: first}
	}
	for _, tc := range []struct {
		name  string
		fault pop3test.Fault
		want  string
	}{
		{"greeting", dribble("GREETING", 0), "timed out after 3s waiting for " + "%s (reading the greeting)"},
		{"PASS", dribble("PASS", 0), "timed out after 3s waiting for %s (reading the reply to PASS)"},
		{"UIDL listing", dribble("UIDL", 12), "timed out after 3s waiting for %s (reading the reply to UIDL)"},
		{"message body", dribble("RETR", 40), "timed out after 3s waiting for %s (reading message 1 (RETR 1)): only "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			msgs := testMessages(1)
			f := newFixture(t, pop3test.Config{}, msgs)
			f.acct.Timeout = 3 * time.Second
			f.srv.SetFaults(tc.fault)
			start := time.Now()
			_, err := f.poll()
			elapsed := time.Since(start)
			var fe *Error
			want := fmt.Sprintf(tc.want, f.srv.Addr())
			if !errors.As(err, &fe) || fe.Kind != KindNetwork || !strings.Contains(err.Error(), want) {
				t.Fatalf("%v: want a network error saying %q", err, want)
			}
			if elapsed > 12*time.Second {
				t.Errorf("the poll took %v", elapsed.Round(time.Second))
			}
			if n := len(f.delivered()); n != 0 {
				t.Errorf("%d messages delivered", n)
			}
			if n := len(f.srv.Messages()); n != 1 {
				t.Errorf("%d messages on the server, want 1", n)
			}
		})
	}
}

// TestPollCeiling: poll_timeout bounds a poll whose every read is within
// the idle timeout: the error names poll_timeout.
func TestPollCeiling(t *testing.T) {
	f := newFixture(t, pop3test.Config{}, testMessages(2))
	f.acct.Timeout = 10 * time.Second
	f.acct.PollTimeout = time.Second
	f.srv.SetFaults(pop3test.Fault{Command: "UIDL", Action: pop3test.Stall, Delay: 4 * time.Second})
	start := time.Now()
	_, err := f.poll()
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindNetwork || !strings.Contains(err.Error(), "poll_timeout (1s)") {
		t.Fatalf("%v: want a network error naming poll_timeout", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("the poll took %v", elapsed)
	}
}

// TestOddUIDs: a server whose UIDs hold a CR, a space, a control
// character or non-ASCII bytes. Each is kept escaped (pop3.CanonicalUID):
// every message is delivered once, none stops the others, keep mode
// knows them at the next poll, and the warning comes once per Memo. The
// UID "2 a\rb" used to fail every poll with exit 23.
func TestOddUIDs(t *testing.T) {
	msgs := testMessages(6)
	msgs[1].UID = "a\rb"
	msgs[2].UID = "c d"
	msgs[3].UID = "\x1b[2J"
	msgs[4].UID = "jörg"
	for _, keep := range []bool{true, false} {
		f := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
		f.acct.Keep = keep
		var log logBuffer
		memo := &Memo{}
		st, err := f.quirkPoll(&log, memo)
		if err != nil || st.Delivered != 6 {
			t.Fatalf("keep=%v: %+v, %v", keep, st, err)
		}
		f.assertDelivered(msgs)
		if n := strings.Count(log.String(), "RFC 1939 does not allow"); n != 1 {
			t.Errorf("warned %d times:\n%s", n, log.String())
		}
		st, err = f.quirkPoll(&log, memo)
		if err != nil || st.New != 0 || st.Delivered != 0 {
			t.Fatalf("keep=%v, second poll: %+v, %v", keep, st, err)
		}
		if n := strings.Count(log.String(), "RFC 1939 does not allow"); n != 1 {
			t.Errorf("warned %d times after two polls", n)
		}
		if !keep && len(f.srv.Messages()) != 0 {
			t.Errorf("%d messages left on the server", len(f.srv.Messages()))
		}
	}
}

// peakHeap runs fn and returns the most heap it saw in use above what was
// in use before, sampled every millisecond. The garbage collector runs
// often meanwhile (GOGC=10), so that what is counted is what fn holds,
// not what it has dropped and the collector has not yet taken back.
func peakHeap(fn func()) uint64 {
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	done := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > peak.Load() {
				peak.Store(ms.HeapInuse - base)
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	fn()
	close(done)
	return peak.Load()
}

// TestListingMemoryBounded: a listing of 100,000 messages with 400-octet
// UIDs (40 MB of UIDs). Kept messages cost no UID: with all of them
// delivered before, a poll's heap stays within 24 MiB; with all of them
// new, the UIDs kept stop at 32 MiB, the rest wait for the next poll
// (exit 13's kind), and the heap stays within 64 MiB. Holding the whole
// listing took 0.8-0.95 GB for a million such UIDs.
func TestListingMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	const n = 100_000
	uid := func(i int) string { return fmt.Sprintf("%08d-%s", i, strings.Repeat("u", 391)) }
	var listing bytes.Buffer
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&listing, "%d %s\r\n", i, uid(i))
	}
	listing.WriteString(".\r\n")
	data := listing.Bytes()
	for _, seen := range []bool{true, false} {
		host, port := hostileServer(t, func(w io.Writer) { w.Write(data) })
		f := newFixture(t, pop3test.Config{}, nil)
		f.acct.Server, f.acct.Port, f.acct.Keep = host, port, true
		if seen {
			uids := make([]string, n)
			for i := range uids {
				uids[i] = uid(i + 1)
			}
			if err := f.store.Record(f.acct.Key(), uids...); err != nil {
				t.Fatal(err)
			}
		}
		var st Stats
		var err error
		var log logBuffer
		opts := &Options{Log: slog.New(slog.NewTextHandler(&log, nil))}
		peak := peakHeap(func() {
			// Check lists and compares as a poll does, and fetches
			// nothing (the hostile server serves no message).
			st, err = Check(context.Background(), f.acct, f.store, opts)
		})
		limit := uint64(24 << 20)
		if !seen {
			limit = 64 << 20
		}
		t.Logf("all seen=%v: peak heap %.1f MiB; %+v, %v", seen, float64(peak)/(1<<20), st, err)
		if peak > limit {
			t.Errorf("all seen=%v: the poll's heap peaked at %.1f MiB, want at most %d MiB", seen, float64(peak)/(1<<20), limit>>20)
		}
		if err != nil || st.Messages != n || (seen && st.New != 0) || (!seen && st.New != n) {
			t.Errorf("all seen=%v: %+v, %v", seen, st, err)
		}
		if deferred := strings.Contains(log.String(), "messages wait for the next poll"); deferred == seen {
			t.Errorf("all seen=%v: deferral logged %v:\n%s", seen, deferred, log.String())
		}
	}
}

// TestSlowListingDoesNotStallOthers: while one server dribbles its UIDL
// listing (a line every 300 ms, within every deadline), another account
// sharing the store delivers and commits: no read transaction is held
// across the slow server's network reads (which kept bbolt from growing,
// stalling every other account's commits until the listing ended).
func TestSlowListingDoesNotStallOthers(t *testing.T) {
	var slow []pop3test.Message
	for i := range 12 {
		slow = append(slow, pop3test.Message{UID: fmt.Sprintf("slow-%d", i), Data: []byte("Subject: s\n\nx\n")})
	}
	hostile := newFixture(t, pop3test.Config{}, slow)
	hostile.acct.Keep = true
	hostile.srv.SetFaults(pop3test.Fault{Command: "UIDL", Action: pop3test.Dribble, Delay: 60 * time.Millisecond})
	// The honest account: another server, the same store, enough mail
	// that the store must grow.
	var msgs []pop3test.Message
	for i := range 2000 {
		msgs = append(msgs, pop3test.Message{UID: fmt.Sprintf("honest-%05d-%s", i, strings.Repeat("x", 60)), Data: []byte("Subject: h\n\nbody\n")})
	}
	honest := newFixture(t, pop3test.Config{Pipelining: true}, msgs)
	honest.store = hostile.store // another server: another key in the same store
	honest.acct.Name = "honest"
	started := make(chan struct{})
	hostileDone := make(chan error, 1)
	go func() {
		close(started)
		_, err := Poll(context.Background(), hostile.acct, hostile.store, hostile.md, nil)
		hostileDone <- err
	}()
	<-started
	time.Sleep(300 * time.Millisecond) // the slow listing is under way
	start := time.Now()
	st, err := Poll(context.Background(), honest.acct, honest.store, honest.md, nil)
	took := time.Since(start)
	select {
	case err := <-hostileDone:
		t.Fatalf("the honest poll ended only after the slow listing (%v), in %v: it was stalled", err, took)
	default:
	}
	if err != nil || st.Delivered != 2000 {
		t.Fatalf("honest: %+v, %v", st, err)
	}
	if err := <-hostileDone; err != nil {
		t.Fatalf("hostile: %v", err)
	}
	t.Logf("the honest poll took %v beside a listing that took seconds", took)
}

// TestLegacyRawUIDs: popfetch before canonical UIDs stored some odd UIDs
// raw (a space, a tab, non-ASCII). After the upgrade their messages are
// not taken for new: each record is found under the raw form and moved to
// the canonical one, keeping its first-seen time.
func TestLegacyRawUIDs(t *testing.T) {
	msgs := testMessages(3)
	msgs[0].UID, msgs[1].UID = "with space", "café"
	f := newFixture(t, pop3test.Config{}, msgs)
	f.acct.Keep = true
	when := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	if err := f.store.RecordAt(f.acct.Key(), when, "with space", "café", "uid-3"); err != nil {
		t.Fatal(err)
	}
	st, err := f.quirkPoll(nil, nil)
	if err != nil || st.New != 0 || st.Delivered != 0 {
		t.Fatalf("%+v, %v: the old records were not found", st, err)
	}
	first, err := f.store.FirstSeen(f.acct.Key(), []string{pop3.CanonicalUID("with space"), "with space"})
	if err != nil || !first[0].Equal(when) || !first[1].IsZero() {
		t.Errorf("records after the poll: %v, %v", first, err)
	}
	if st, err := f.quirkPoll(nil, nil); err != nil || st.New != 0 {
		t.Fatalf("second poll: %+v, %v", st, err)
	}
}

// TestDribblingServerTLS: over POP3S the minimum rate counts message
// data, not TLS records. The server sends a byte every 40 ms, each in a
// record of its own: some 1,700 octets of TLS a timeout (3 s), but only
// 75 of message, under the minimum of 1 KiB.
func TestDribblingServerTLS(t *testing.T) {
	cert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	msgs := []pop3test.Message{{UID: "big", Data: bytes.Repeat([]byte("0123456789abcdef\n"), 200)}}
	f := newFixture(t, pop3test.Config{TLS: cert.ServerConfig()}, msgs)
	f.acct.TLS, f.acct.TLSConfig, f.acct.Timeout = TLSImplicit, cert.ClientConfig("127.0.0.1"), 3*time.Second
	f.srv.SetFaults(pop3test.Fault{Command: "RETR", Action: pop3test.Dribble, Delay: 40 * time.Millisecond, Bytes: 20})
	start := time.Now()
	_, err = f.poll()
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindNetwork || !strings.Contains(err.Error(), "under the minimum of 1024 for each timeout") {
		t.Fatalf("%v: want the message given up as too slow", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("took %v", elapsed)
	}
}

// TestListedTwiceWithoutUIDL: a server without UIDL that lists a message
// number twice in LIST is a protocol error before anything is fetched or
// deleted; the message was fetched, delivered and deleted twice.
func TestListedTwiceWithoutUIDL(t *testing.T) {
	for _, pipelining := range []bool{false, true} {
		msgs := testMessages(2)
		f := newFixture(t, pop3test.Config{NoUIDL: true, Pipelining: pipelining}, msgs)
		f.srv.SetFaults(pop3test.Fault{Command: "LIST", Action: pop3test.Reply, Reply: "+OK\r\n1 100\r\n2 100\r\n1 100\r\n."})
		st, err := f.poll()
		if kindOf(err) != KindProtocol || !strings.Contains(err.Error(), "message 1 listed twice") {
			t.Fatalf("pipelining %v: %+v, err = %v, want a protocol error", pipelining, st, err)
		}
		if n := f.srv.Count("RETR") + f.srv.Count("DELE"); n != 0 {
			t.Errorf("pipelining %v: %d RETR and DELE sent", pipelining, n)
		}
		f.assertDelivered(nil)
		if left := len(f.srv.Messages()); left != 2 {
			t.Errorf("pipelining %v: %d messages left on the server, want 2", pipelining, left)
		}
	}
}
