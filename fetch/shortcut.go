package fetch

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/uidstore"
)

// The no-new-mail shortcut (docs/performance.md, "The shortcut"). A
// clean poll of a mailbox kept on the server leaves a uidstore.Summary:
// the message count C and octets STAT gave, and the UIDs of messages 1
// and C, every one of messages 1..C being recorded as delivered. The next
// poll sends STAT, UIDL 1 and UIDL C in one flight instead of listing
// every message. If they show the same C messages, only the messages
// numbered after C can be new, and only they are asked for (UIDL m and
// LIST m each). On any doubt the poll lists in full, as without a
// summary.

// fullListingEvery bounds the polls that trust a summary in a row: every
// tenth poll lists in full. That catches within ten polls what the probes
// cannot see (a server that reorders and replaces a message with one of
// the same size, a UID used again, UIDs imported that prune should
// forget), and costs a tenth of a full listing per poll: with 50,000
// messages kept, about 15 ms a poll on average where the listing takes
// 150 ms.
const fullListingEvery = 10

// The most new messages asked for one at a time (UIDL m and LIST m); with
// more, the full listing. Pipelined, 256 messages are 512 short commands
// in one flight, a few KiB each way; one at a time each costs two round
// trips, and a listing is one.
const (
	maxTailPipelined = 256
	maxTailOneByOne  = 2
)

// noProbeRetry is how long a server that refused UIDL n is not probed.
const noProbeRetry = 7 * 24 * time.Hour

// shortcutConfig is a fingerprint of the settings that decide which
// messages a poll fetches or deletes: a summary written under other
// settings is not trusted. (A clean poll left nothing undelivered, so
// most of them could not make it wrong; it is cheap insurance: one full
// listing after a change.)
func (a *Account) shortcutConfig() uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "v1 keep=%t all=%t after=%d larger=%d limit=%d fetchlimit=%d",
		a.Keep, a.FetchAll, a.DeleteAfter, a.DeleteLargerThan, a.SizeLimit, a.FetchLimit)
	return h.Sum64()
}

// shortcut is what a poll knows of the shortcut.
type shortcut struct {
	allowed bool             // the poll may trust and write a summary (keep mode, see allowShortcut)
	sum     uidstore.Summary // the summary read at the start
	trusted bool             // sum may be probed
	used    bool             // the probes held: the poll saw only the tail
	wrong   bool             // the probes showed that sum no longer holds
	noProbe bool             // the server refused UIDL n
	first   string           // what the next summary is to say, once the poll is clean
	last    string
	known   bool // first and last are known
	keepOld bool // leave sum as it is (a server that refused UIDL n, not asked again yet)
}

// allowShortcut reports whether the account's settings let a poll trust
// a summary: keep mode without delete_after or fetch_all. In delete mode
// the mailbox is emptied anyway, and a poll that may delete messages
// already delivered would make the summary wrong.
func (s *session) allowShortcut() bool {
	a := s.acct
	return a.Keep && !a.FetchAll && a.DeleteAfter == 0 && !s.keepUIDs
}

// loadSummary reads the account's summary and decides whether to trust
// it. A poll that may not keep it true (delete mode, delete_after,
// fetch_all) drops it first, before anything is deleted.
func (s *session) loadSummary() error {
	key := s.acct.Key()
	if !s.allowShortcut() {
		return s.store.DropSummary(key)
	}
	s.sc.allowed = true
	sum, ok, err := s.store.Summary(key)
	if err != nil || !ok {
		return err
	}
	s.sc.sum = sum
	switch {
	case sum.Config != s.acct.shortcutConfig():
		s.log.Debug("listing in full: the account's settings changed")
	case sum.NoProbe && time.Since(sum.At) < noProbeRetry:
		// Not asked again for a while; the summary stays as it is.
		s.sc.noProbe, s.sc.keepOld = true, true
	case sum.Polls >= fullListingEvery-1:
		s.log.Debug("listing in full", "polls_since", sum.Polls+1)
	default:
		s.sc.trusted = true
	}
	return nil
}

// probe checks the summary against the server and, if it holds, returns
// the messages numbered after it (ok). It reports !ok, and the reason in
// the debug log, if the full listing must decide.
func (s *session) probe(ctx context.Context) (msgs []message, ok bool, err error) {
	sum := s.sc.sum
	if s.expire == "0" {
		return nil, false, nil // the server deletes what is retrieved: mail does not stay
	}
	var nums []int
	if sum.Count > 0 {
		nums = append(nums, 1)
	}
	if sum.Count > 1 {
		nums = append(nums, sum.Count)
	}
	p, err := s.c.Probe(ctx, pop3.ProbeRequest{UIDs: nums}, s.pipelining())
	if err != nil {
		return nil, false, err
	}
	doubt := func(why string, args ...any) ([]message, bool, error) {
		s.log.Debug("listing in full: "+why, args...)
		return nil, false, nil
	}
	wrong := func(why string, args ...any) ([]message, bool, error) {
		s.sc.wrong = true
		return doubt(why, args...)
	}
	if p.StatErr != nil {
		return doubt("STAT failed", "err", p.StatErr)
	}
	switch {
	case p.Count < sum.Count:
		return wrong("fewer messages than at the last poll", "count", p.Count, "was", sum.Count)
	case p.Count == sum.Count && p.Size != sum.Size:
		return wrong("the mailbox's size changed", "octets", p.Size, "was", sum.Size)
	case p.Size < sum.Size:
		return wrong("the mailbox shrank", "octets", p.Size, "was", sum.Size)
	}
	want := []string{sum.FirstUID, sum.LastUID}
	for i, n := range nums {
		var perr *pop3.Error
		switch e := p.UIDErrs[i]; {
		case errors.As(e, &perr):
			s.sc.noProbe = true
			return doubt("the server refused UIDL for one message", "number", n, "err", e)
		case e != nil:
			return doubt("UIDL for one message failed", "number", n, "err", e)
		case p.UIDs[i].UID != want[i]:
			return wrong("a message has moved", "number", n)
		}
	}
	s.stat = statReply{count: p.Count, size: p.Size, ok: true}
	s.stats.Messages = p.Count
	s.sc.first, s.sc.last, s.sc.known = sum.FirstUID, sum.LastUID, true
	tail := p.Count - sum.Count
	if tail == 0 {
		s.sc.used = true
		s.log.Debug("nothing new since the last poll", "messages", p.Count)
		return nil, true, nil
	}
	max := maxTailOneByOne
	if s.pipelining() {
		max = maxTailPipelined
	}
	if tail > max {
		return doubt("many new messages", "new", tail)
	}
	msgs, ok, err = s.probeTail(ctx, sum.Count, p)
	if ok {
		s.sc.used = true
		s.log.Debug("the last poll's messages are unchanged; asking for those after them", "messages", p.Count, "after", sum.Count)
	}
	return msgs, ok, err
}

// probeTail asks for the UIDs and sizes of the messages numbered after
// the summary's and compares them with the store, as a listing would.
// The sizes check the rest: the maildrop's octets less the new messages'
// must be the summary's.
func (s *session) probeTail(ctx context.Context, known int, stat pop3.Probed) ([]message, bool, error) {
	var nums []int
	for n := known + 1; n <= stat.Count; n++ {
		nums = append(nums, n)
	}
	p, err := s.c.Probe(ctx, pop3.ProbeRequest{UIDs: nums, Sizes: nums}, s.pipelining())
	if err != nil {
		return nil, false, err
	}
	doubt := func(why string, args ...any) ([]message, bool, error) {
		s.log.Debug("listing in full: "+why, args...)
		return nil, false, nil
	}
	if p.StatErr != nil || p.Count != stat.Count || p.Size != stat.Size {
		return doubt("STAT changed within the session")
	}
	l := s.newLister()
	l.expect(len(nums), 0)
	tailSize := int64(0)
	for i := range nums {
		if err := errors.Join(p.UIDErrs[i], p.SizeErrs[i]); err != nil {
			var perr *pop3.Error
			if errors.As(p.UIDErrs[i], &perr) {
				s.sc.noProbe = true
			}
			return doubt("a new message's UID or size failed", "number", nums[i], "err", err)
		}
		u := p.UIDs[i]
		if u.UID == s.sc.sum.FirstUID || u.UID == s.sc.sum.LastUID {
			s.sc.wrong = true
			return doubt("a new message has an old message's UID", "number", nums[i])
		}
		if err := l.add(u); err != nil {
			return doubt("the new messages' UIDs", "err", err)
		}
		size := p.Sizes[i].Size
		if size < 0 || size > math.MaxInt64-tailSize {
			s.sc.wrong = true
			return doubt("a new message's size makes no sense", "number", nums[i], "size", size)
		}
		tailSize += size
	}
	if err := l.finish(); err != nil {
		return doubt("the new messages' UIDs", "err", err)
	}
	if stat.Size-tailSize != s.sc.sum.Size {
		s.sc.wrong = true
		return doubt("the last poll's messages changed size", "octets", stat.Size-tailSize, "was", s.sc.sum.Size)
	}
	for i := range nums {
		l.setSize(p.Sizes[i])
	}
	if s.sc.sum.Count == 0 {
		s.sc.first = p.UIDs[0].UID
	}
	s.sc.last = p.UIDs[len(nums)-1].UID
	s.lister = l
	return l.msgs, true, nil
}

// listed notes what a full listing says for the next summary: the UIDs of
// message 1 and of the last, if the listing numbered its messages 1..n
// in order and STAT agrees.
func (s *session) listed() {
	l := s.lister
	if !s.sc.allowed || l == nil || !s.stat.ok || !l.ordered || s.stat.count != l.count {
		return
	}
	switch {
	case l.count == 0:
		s.sc.first, s.sc.last, s.sc.known = "", "", true
	case l.lowest.Number == 1 && l.highest.Number == l.count:
		s.sc.first, s.sc.last, s.sc.known = l.lowest.UID, l.highest.UID, true
	}
}

// clean reports whether the poll left every message it saw delivered and
// recorded, and deleted none: then messages 1..count are all recorded.
func (s *session) clean() bool {
	st := s.stats
	return s.softErr == nil && st.New == st.Delivered && st.Failed == 0 && st.Skipped == 0 &&
		st.Discarded == 0 && st.Expired == 0 && st.Deleted == 0 && !st.LimitReached && !st.Stopped
}

// saveSummary writes the summary a clean poll leaves, once the poll has
// ended (QUIT answered). A poll that was not clean leaves the summary it
// found: it still holds for the messages it describes, and the messages
// after them are asked for by the next poll. Only one that the probes
// showed wrong is dropped.
func (s *session) saveSummary() error {
	key := s.acct.Key()
	if !s.sc.allowed || (s.sc.keepOld && !s.sc.wrong) {
		return nil
	}
	if !s.clean() || !s.sc.known || !s.stat.ok {
		if s.sc.wrong {
			return s.store.DropSummary(key)
		}
		return nil
	}
	sum := uidstore.Summary{Count: s.stat.count, Size: s.stat.size, FirstUID: s.sc.first, LastUID: s.sc.last,
		Config: s.acct.shortcutConfig(), NoProbe: s.sc.noProbe, At: time.Now()}
	if s.sc.used {
		sum.Polls = s.sc.sum.Polls + 1
	}
	return s.store.SetSummary(key, sum)
}
