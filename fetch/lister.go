package fetch

import (
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/uidstore"
)

// errNoUIDL stands for the UIDL reply of a server whose CAPA lacks UIDL.
var errNoUIDL = errors.New("the server does not list UIDL among its capabilities")

// lister turns a UIDL listing into messages as it streams in, looking
// the UIDs up in the store a chunk at a time, each chunk in a short read
// transaction of its own: a transaction held across network reads would
// keep the store from growing, and so stall the commits of every other
// account of the daemon for as long as a slow server takes to list.
//
// What it keeps does not grow with the UIDs' length, and of a message
// delivered before it keeps only what the plan needs of it:
//
//   - of every message, a 64-bit hash of its UID (8 octets), to find a
//     UID used twice and to tell prune which recorded UIDs are still on
//     the server, and a bit for its number, to find a number listed
//     twice;
//   - of a new message, its number and UID (or, past maxKeptUIDBytes of
//     UIDs, its number only: it waits for the next poll);
//   - of a message delivered before: in keep mode nothing; in delete
//     mode its number (it is to be deleted); with delete_after its number
//     and first-seen time if it is that old; with fetch_all or for
//     popfetch list everything.
//
// A UID used twice stops the poll before anything is deleted: deleting
// by UID could delete the wrong message, and in keep mode a new message
// with an old message's UID would never be fetched.
type lister struct {
	store *uidstore.Store
	key   uidstore.Key
	// keepUIDs holds every message whole (fetch_all, popfetch list);
	// keepSeen holds the numbers of messages delivered before (delete
	// mode); expireAfter, if > 0, those first seen at least that long
	// before now.
	keepUIDs    bool
	keepSeen    bool
	expireAfter time.Duration
	now         time.Time

	seed     maphash.Seed
	hashes   []uint64 // of every UID, in listing order until finish sorts them
	prev     uint64   // the hash of the line before, and its number: the common
	prevNum  int      // case of a UID used twice is named with its numbers
	nums     []uint64 // a bit per message number listed
	last     int      // the number listed last
	ordered  bool     // the numbers have risen line by line so far
	count    int      // messages listed
	seen     int      // of them recorded in the store
	lowest   pop3.MessageUID
	highest  pop3.MessageUID
	chunk    []pop3.MessageUID // read, not yet looked up
	msgs     []message         // what the plan needs (see above), in listing order
	escaped  int               // UIDs kept escaped (pop3.CanonicalUID)
	example  string            // one of them
	kept     int               // octets of the UIDs kept
	deferred int               // messages left for the next poll (maxKeptUIDBytes)
	rekey    []uidstore.Rename // records found under a UID's raw form, to store under its canonical one
	index    map[int]int       // message number -> index in msgs, for sizes of a listing out of order
	finished bool
	err      error // the first failure of add or finish
}

// newLister returns a lister for the account's policies.
func (s *session) newLister() *lister {
	a := s.acct
	l := &lister{store: s.store, key: a.Key(), keepUIDs: s.keepUIDs || a.FetchAll,
		keepSeen: !a.Keep, seed: maphash.MakeSeed(), ordered: true, now: time.Now()}
	if a.Keep {
		l.expireAfter = a.DeleteAfter
	}
	return l
}

// lookupChunk is how many UIDs one read transaction looks up.
const lookupChunk = 1024

// maxKeptUIDBytes bounds the octets of UIDs a listing keeps (those of
// new messages): past it, further new messages wait for the next poll, as
// with fetch_limit (docs/performance.md).
const maxKeptUIDBytes = 32 << 20

// expect sizes the lister for count messages (STAT's count, which comes
// before the listing), so that the hashes are not copied as they grow.
func (l *lister) expect(count int, _ int64) {
	if l.count == 0 && count > 0 {
		// Bounded lower than the listing itself: STAT's count is the
		// server's word, and a lying one would cost every poll the
		// allocation; past it, the slice grows as the lines come.
		l.hashes = make([]uint64, 0, min(count, 1<<16))
		if l.keepSeen || l.keepUIDs {
			// Every message listed is kept: sized up front, within a
			// bound a lie costs little under (288 KB).
			l.msgs = make([]message, 0, min(count, 4096))
		}
	}
}

func (l *lister) add(u pop3.MessageUID) error {
	if l.err != nil {
		return l.err
	}
	l.err = l.addLine(u)
	return l.err
}

func (l *lister) addLine(u pop3.MessageUID) error {
	if u.Number > pop3.MaxListingLines {
		return &pop3.ProtocolError{Op: "UIDL", Msg: fmt.Sprintf("message number %d: a listing has at most %d messages", u.Number, pop3.MaxListingLines)}
	}
	h := maphash.String(l.seed, u.UID)
	if l.count > 0 && h == l.prev {
		return dupUIDError(u.UID, l.prevNum, u.Number)
	}
	word, bit := u.Number/64, uint64(1)<<(u.Number%64)
	if word >= len(l.nums) {
		l.nums = slices.Grow(l.nums, word+1-len(l.nums))[:word+1]
	}
	if l.nums[word]&bit != 0 {
		return &pop3.ProtocolError{Op: "UIDL", Msg: fmt.Sprintf("message %d listed twice", u.Number)}
	}
	l.nums[word] |= bit
	if u.Number <= l.last {
		l.ordered = false
	}
	if l.count == 0 || u.Number < l.lowest.Number {
		l.lowest = u
	}
	if u.Number > l.highest.Number {
		l.highest = u
	}
	l.last, l.prev, l.prevNum = u.Number, h, u.Number
	l.hashes = append(l.hashes, h)
	l.count++
	l.chunk = append(l.chunk, u)
	if len(l.chunk) >= lookupChunk {
		return l.flush()
	}
	return nil
}

func dupUIDError(uid string, a, b int) error {
	return &pop3.ProtocolError{Op: "UIDL", Msg: fmt.Sprintf("UID %q is used by more than one message (%d and %d)", shortUID(uid), a, b)}
}

// finish looks up what is left of the listing and checks that no UID is
// used twice. It may be called more than once.
func (l *lister) finish() error {
	if l.err != nil || l.finished {
		return l.err
	}
	l.finished = true
	if l.err = l.flush(); l.err != nil {
		return l.err
	}
	slices.Sort(l.hashes)
	for i := 1; i < len(l.hashes); i++ {
		if l.hashes[i] == l.hashes[i-1] {
			l.err = l.dupError(l.hashes[i])
			return l.err
		}
	}
	return nil
}

// dupError names the messages that share a UID of hash h if the lister
// kept their UIDs (popfetch list), else says only that there are some.
func (l *lister) dupError(h uint64) error {
	var uid string
	var nums []int
	for _, m := range l.msgs {
		if m.uid != "" && maphash.String(l.seed, m.uid) == h {
			uid = m.uid
			nums = append(nums, m.num)
		}
	}
	if len(nums) >= 2 {
		return dupUIDError(uid, nums[0], nums[1])
	}
	return &pop3.ProtocolError{Op: "UIDL", Msg: "a UID is used by more than one message (popfetch list shows which)"}
}

// flush looks up the chunk read so far and turns it into messages.
func (l *lister) flush() error {
	if len(l.chunk) == 0 {
		return nil
	}
	uids := make([]string, len(l.chunk))
	var legacy []string // raw forms of escaped UIDs, for records an older popfetch made
	for i, u := range l.chunk {
		uids[i] = u.UID
		if strings.HasPrefix(u.UID, pop3.EscapedPrefix) {
			legacy = append(legacy, pop3.RawUID(u.UID))
		}
	}
	first, err := l.store.FirstSeen(l.key, uids)
	if err != nil {
		return err
	}
	var legacyFirst []time.Time
	if len(legacy) > 0 {
		if legacyFirst, err = l.store.FirstSeen(l.key, legacy); err != nil {
			return err
		}
	}
	li := 0
	for i, u := range l.chunk {
		t := first[i]
		if strings.HasPrefix(u.UID, pop3.EscapedPrefix) {
			if t.IsZero() && !legacyFirst[li].IsZero() {
				t = legacyFirst[li]
				l.rekey = append(l.rekey, uidstore.Rename{Old: legacy[li], New: u.UID, First: t})
			}
			li++
			if l.escaped++; l.escaped == 1 {
				l.example = u.UID
			}
		}
		m := message{num: u.Number, seen: !t.IsZero(), first: t}
		if m.seen {
			l.seen++
			expired := l.expireAfter > 0 && l.now.Sub(t) >= l.expireAfter
			if !l.keepUIDs && !l.keepSeen && !expired {
				continue
			}
		}
		needUID := !m.seen || l.keepUIDs
		switch {
		case needUID && l.kept+len(u.UID) > maxKeptUIDBytes:
			m.deferred = true
			l.deferred++
		case needUID:
			m.uid = u.UID
			l.kept += len(u.UID)
		}
		l.msgs = append(l.msgs, m)
	}
	clear(l.chunk) // drop the UIDs for the collector
	l.chunk = l.chunk[:0]
	return nil
}

// present reports whether a recorded UID is in the listing (for prune),
// once finish has sorted the hashes. A stored UID whose hash matches
// another's is kept: harmless.
func (l *lister) present(uid []byte) bool {
	_, ok := slices.BinarySearch(l.hashes, maphash.Bytes(l.seed, uid))
	return ok
}

// setSize notes the size LIST gave message n, if the lister holds it.
func (l *lister) setSize(sz pop3.MessageSize) {
	var i int
	var ok bool
	if l.ordered {
		i, ok = slices.BinarySearchFunc(l.msgs, sz.Number, func(m message, n int) int { return m.num - n })
	} else {
		if l.index == nil {
			l.index = make(map[int]int, len(l.msgs))
			for i, m := range l.msgs {
				l.index[m.num] = i
			}
		}
		i, ok = l.index[sz.Number]
	}
	if ok {
		l.msgs[i].size, l.msgs[i].sizeKnown = sz.Size, true
	}
}
