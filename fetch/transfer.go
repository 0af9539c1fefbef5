package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/uidstore"
)

// tuning sizes the transfer. The defaults suit both a local server and one
// a continent away; tests shrink them to reach the edge cases.
type tuning struct {
	window    int           // commands awaiting replies when pipelining
	syncers   int           // goroutines that fsync a batch's messages
	queue     int           // staged messages waiting for the sequencer (at least batch)
	batch     int           // messages per batch: two commits of the store each
	batchWait time.Duration // how long a batch waits to fill while the reader goes on
}

// defaultTuning: a window of 1024 commands and room for 128 staged
// messages keep a distant server busy through the moments the reader waits
// for the disk (each such stall would otherwise cost a round trip). The
// staged messages are open files, their data in the page cache, not in
// memory of ours: at most queue + batch + 1 of them. A batch of up to 64
// messages gathered over up to 20 ms bounds the store's commits: 2000
// small messages take about 32 batches, where publishing each handful as
// it came cost some 600 commits with the disk out of the way.
var defaultTuning = tuning{window: 1024, syncers: 4, queue: 128, batch: 64, batchWait: 20 * time.Millisecond}

// The transfer runs in three parts, so that reading the network never
// waits for a disk, and the messages are still delivered in server order:
//
//   - the writer sends RETR for each new message and DELE for each message
//     that may be deleted, through a pop3.Pipeline (a window of 1 when
//     the server cannot pipeline);
//   - the reader (the calling goroutine) reads the replies in order and
//     streams each message into the deliverer's Stage, which writes it
//     without fsync;
//   - the sequencer takes the staged messages in server order, a batch at
//     a time (batchQueue), and for each batch fsyncs the messages, several
//     at once (deliver.Syncer), records them as pending, and publishes
//     them in order;
//   - the committer, a batch behind, flushes the deliverer (fsync of the
//     Maildir's new/; for IMAP, the answers to the batch's APPENDs, read
//     while the next batch goes out: deliver.Marker), commits the batch's
//     UIDs in one transaction, and only then queues their DELEs for the
//     writer.
//
// Every queue but the DELE queue is bounded, so memory does not grow with
// the mailbox however far the network runs ahead of the disk. The DELE
// queue holds message numbers only, and keeps the sequencer from ever
// waiting for the writer, which breaks the only possible cycle of waits.

// fetched is a message on its way from the network to a commit.
type fetched struct {
	message
	staged  deliver.Staged
	size    int64  // octets delivered
	subject string // for the log line; "" unless logging per message
	syncErr error  // the outcome of deliver.Syncer's Sync
	// Set by the sequencer for the committer: published, or why not.
	published bool
	pubErr    error
}

// transfer fetches toFetch and deletes toDelete (messages already
// delivered), and returns how many messages were marked for deletion and
// whether the session is over: it pipelines QUIT behind the last DELE
// when nothing failed, and Options.Stop may end it without QUIT.
func (s *session) transfer(ctx context.Context, toFetch, toDelete []message, hasUIDL bool) (int, bool, error) {
	if len(toFetch) == 0 && len(toDelete) == 0 {
		return 0, false, nil
	}
	window := 1
	if s.pipelining() {
		window = s.tune.window
	}
	p, err := s.c.Pipeline(ctx, window)
	if err != nil {
		return 0, false, err
	}
	t := &transferRun{s: s, p: p, hasUIDL: hasUIDL, dele: newNumQueue()}
	t.stop.remaining = len(toFetch)
	t.run(ctx, toFetch, toDelete)
	endErr := p.End()
	if t.fatal != nil {
		return t.read.deleted, false, t.fatal
	}
	if t.stop.isAbandoned() {
		// Stopped with replies still to come: the connection is closed,
		// and without QUIT nothing was deleted.
		return 0, true, nil
	}
	if endErr != nil {
		return t.read.deleted, false, endErr
	}
	if t.quitErr != nil {
		return t.read.deleted, true, t.quitErr
	}
	return t.read.deleted, t.quit, nil
}

// counts is what one stage of the transfer counted.
type counts struct {
	delivered, failed, skipped, discarded, deleted int
	bytes                                          int64
	lastErr                                        error // the last failure the stage went on after
}

// add adds o to c; o's failure, if any, becomes c's last.
func (c *counts) add(o counts) {
	c.delivered += o.delivered
	c.failed += o.failed
	c.skipped += o.skipped
	c.discarded += o.discarded
	c.deleted += o.deleted
	c.bytes += o.bytes
	if o.lastErr != nil {
		c.lastErr = o.lastErr
	}
}

type transferRun struct {
	s       *session
	p       *pop3.Pipeline
	hasUIDL bool
	dele    *numQueue

	mu    sync.Mutex
	fatal error // the first failure that ends the transfer

	// Each stage counts for itself; run adds the counts up into the
	// session's Stats once the stages have joined.
	read      counts       // the reader's: refused RETRs and DELEs, oversized messages, deletions
	committed counts       // the committer's: messages delivered, deliveries that failed
	quit      bool         // the reader's: the reply to a pipelined QUIT was read
	quitErr   error        // the reader's: QUIT was answered -ERR (the deletions may not have happened)
	failures  atomic.Int64 // deliveries failed in a row, by the reader or the sequencer
	stopped   atomic.Bool  // a stop gave up the network side
	down      atomic.Bool  // the target can take no message (deliver.Error.Down)

	queue *batchQueue // staged messages in server order, to the sequencer
	stop  stopState
}

// stopState decides when Options.Stop gives up the network side: between
// messages at once, in a message once it is staged, never once every RETR
// is answered (the session then ends with its DELEs and QUIT) or after a
// failure. Its methods are safe for concurrent use; those that report
// abandon=true hand the giving up itself (transferRun.abandon) to their
// caller, exactly once.
type stopState struct {
	mu        sync.Mutex
	inMessage bool // the reader is streaming a message
	remaining int  // RETR replies still to come
	stopping  bool // a stop was asked
	abandoned bool // the network side was given up
	failed    bool // the transfer failed: there is nothing to give up
}

// tryAbandonLocked gives the network side up if anything is left to give
// up; s.mu must be held.
func (s *stopState) tryAbandonLocked() bool {
	if s.abandoned || s.remaining == 0 || s.failed {
		return false
	}
	s.abandoned = true
	return true
}

// request notes that a stop was asked; between messages it abandons.
func (s *stopState) request() (abandon bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = true
	return !s.inMessage && s.tryAbandonLocked()
}

// startMessage marks the reader as streaming a message; it reports false
// if the network side was given up meanwhile.
func (s *stopState) startMessage() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.abandoned {
		return false
	}
	s.inMessage = true
	return true
}

// endMessage counts a RETR reply as handled; it abandons if a stop was
// asked meanwhile.
func (s *stopState) endMessage() (remaining int, abandon, abandoned bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inMessage = false
	s.remaining--
	abandon = s.stopping && s.tryAbandonLocked()
	return s.remaining, abandon, s.abandoned
}

// fail notes that the transfer failed.
func (s *stopState) fail() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed = true
}

// isStopping reports whether a stop was asked; the writer sends no RETR
// after that.
func (s *stopState) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// isAbandoned reports whether the network side was given up on purpose,
// so that its failures are no errors.
func (s *stopState) isAbandoned() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.abandoned
}

// left returns how many RETR replies are still to come.
func (s *stopState) left() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remaining
}

// abandon gives up the network side, once stopState said so: it aborts
// the pipeline (the writer and reader see it fail, and stop) and closes
// the queues of staged messages, so that what was staged is still
// published and committed.
// Without QUIT the server deletes nothing; the next poll deletes what was
// delivered without fetching it again.
func (t *transferRun) abandon() {
	t.stopped.Store(true)
	t.p.Abort()
	t.queue.close()
	t.s.log.Info("stopping: the connection is closed after the last message delivered; deletions wait for the next poll",
		"left", t.stop.left())
}

// fail records a failure that ends the transfer and stops the network
// side with Pipeline.Abort, which is safe from any goroutine and wakes
// the reader and the writer (pop3.Client.Close is not: it is the
// reader's).
func (t *transferRun) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fatal == nil {
		t.fatal = err
		t.stop.fail()
		t.p.Abort()
	}
}

func (t *transferRun) failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fatal != nil
}

// deliveryFailed counts a failed delivery in the stage's counts c;
// enough in a row end the transfer.
func (t *transferRun) deliveryFailed(c *counts, m message, err error) {
	t.countFailed(c, m, err)
	t.failedInARow(err)
}

// countFailed counts and logs a failed delivery in the stage's counts c.
func (t *transferRun) countFailed(c *counts, m message, err error) {
	c.failed++
	c.lastErr = err
	t.s.log.Error("delivery failed; message left on the server", "uid", m.uid, "number", m.num, "err", err)
}

// failedInARow notes one more failed delivery in a row, and ends the
// transfer when there are enough. The sequencer notes its failures as
// they happen, not when the committer counts them a batch later: a
// broken target must stop the downloading soon.
func (t *transferRun) failedInARow(err error) {
	if n := t.failures.Add(1); n >= maxConsecutiveFailures {
		t.fail(fmt.Errorf("giving up after %d failed deliveries in a row: %w", n, err))
	}
}

// tooLarge leaves a message that proved larger than size_limit on the
// server, or deletes it unread if it is larger than delete_larger_than
// too, and notes its UID so that the daemon does not fetch it again.
func (t *transferRun) tooLarge(m message, tl *tooLargeError) {
	a := t.s.acct
	del := a.DeleteLargerThan > 0 && tl.got > a.DeleteLargerThan
	if del {
		t.read.discarded++
	} else {
		t.read.skipped++
	}
	t.s.memo.setTooLarge(m.uid, tl.got)
	if del {
		t.dele.push(m.num)
	}
	t.s.log.Warn(tl.Error(), "uid", m.uid, "number", m.num, "deleted", del)
}

func (t *transferRun) run(ctx context.Context, toFetch, toDelete []message) {
	t.queue = newBatchQueue(t.s.tune.queue, t.s.tune.batch, t.s.tune.batchWait)
	var wg sync.WaitGroup

	if t.s.stop != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-t.s.stop:
				if t.stop.request() {
					t.abandon()
				}
			case <-done:
			}
		}()
	}

	wg.Add(1)
	go func() {
		defer wg.Done()
		t.write(toFetch, toDelete)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.sequence(ctx)
	}()

	t.readReplies(ctx, toFetch)
	wg.Wait()
	t.addUp()
}

// addUp adds the stages' counts to the session's Stats, once they have
// joined: the reader's and the sequencer's.
func (t *transferRun) addUp() {
	var all counts
	all.add(t.read)
	all.add(t.committed)
	st := &t.s.stats
	st.Delivered += all.delivered
	st.Bytes += all.bytes
	st.Failed += all.failed
	st.Skipped += all.skipped
	st.Discarded += all.discarded
	st.Stopped = st.Stopped || t.stopped.Load()
	if all.lastErr != nil {
		t.s.softErr = all.lastErr
	}
}

// write sends the commands: DELE for the messages delivered before, RETR
// for the new ones, and DELE for each committed batch as it comes.
func (t *transferRun) write(toFetch, toDelete []message) {
	send := func(cmd pop3.Command) bool {
		if err := t.p.Send(cmd); err != nil {
			return false // the reader sees the failure too
		}
		return true
	}
	sendDeles := func() bool {
		for _, n := range t.dele.take() {
			if !send(pop3.Command{Verb: "DELE", Msg: n}) {
				return false
			}
		}
		return true
	}
	defer t.p.CloseSend()
	for _, m := range toDelete {
		if !send(pop3.Command{Verb: "DELE", Msg: m.num}) {
			return
		}
	}
	for _, m := range toFetch {
		if t.stop.isStopping() {
			break
		}
		if !sendDeles() || !send(pop3.Command{Verb: "RETR", Msg: m.num}) {
			return
		}
	}
	for {
		if !sendDeles() {
			return
		}
		if t.p.Flush() != nil {
			return
		}
		if !t.dele.wait() {
			if sendDeles() && !t.failed() {
				// Every message marked for deletion is durable and
				// recorded: QUIT may go out behind the last DELE,
				// saving a round trip.
				send(pop3.Command{Verb: "QUIT"})
			}
			return
		}
	}
}

// readReplies reads the replies in order and stages each message. It closes
// the queues of staged messages once every RETR is answered (or the transfer failed or was
// stopped), so that the final batch can be committed while the last DELEs
// are still to come.
func (t *transferRun) readReplies(ctx context.Context, toFetch []message) {
	// The replies to RETR come in the order the writer sent the commands:
	// that of toFetch, in which it skips none (it stops early at most).
	next := 0
	defer t.queue.close()
	if len(toFetch) == 0 {
		t.queue.close()
	}
	for {
		r, err := t.p.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			if !t.stop.isAbandoned() {
				t.fail(err)
			}
			return
		}
		switch r.Command.Verb {
		case "DELE":
			if r.Err != nil {
				t.read.lastErr = r.Err
			} else {
				t.read.deleted++
			}
			if r.Err != nil {
				t.s.log.Warn("the server refused to delete a message", "number", r.Command.Msg, "err", r.Err)
			}
		case "RETR":
			if next >= len(toFetch) || toFetch[next].num != r.Command.Msg {
				t.fail(fmt.Errorf("internal error: a reply to RETR %d out of order", r.Command.Msg))
				return
			}
			m := toFetch[next]
			next++
			if !t.stop.startMessage() {
				return
			}
			ok := t.retrieved(ctx, m, r)
			remaining, abandon, abandoned := t.stop.endMessage()
			if abandon {
				t.abandon()
			}
			if !ok || abandoned {
				return
			}
			if remaining == 0 {
				t.queue.close()
			}
		case "QUIT":
			t.quit = true
			if r.Err != nil { // a *pop3.Error: a nil one is no error
				t.quitErr = r.Err
			}
		default:
			t.fail(fmt.Errorf("internal error: unexpected reply to %s", r.Command.Verb))
			return
		}
	}
}

// retrieved handles the reply to RETR for m. It reports false if the
// transfer must stop.
func (t *transferRun) retrieved(ctx context.Context, m message, r pop3.Reply) bool {
	if r.Err != nil {
		t.s.log.Warn("the server refused to send a message", "uid", m.uid, "number", m.num, "err", r.Err)
		t.read.lastErr = r.Err
		t.read.failed++
		return true
	}
	f, err := t.s.stage(ctx, m, r.Body)
	var derr *deliver.Error
	var tl *tooLargeError
	switch {
	case errors.As(err, &tl) && tl.space:
		t.fail(&deliver.Error{Target: "the file system", Temporary: true, Err: tl})
		return false
	case errors.As(err, &tl):
		t.tooLarge(m, tl)
		return true
	case errors.As(err, &derr) && derr.Down:
		// The target cannot be reached or refuses the login: the next
		// message would fare no better (see targetDown).
		t.down.Store(true)
		t.deliveryFailed(&t.read, m, err)
		t.fail(err)
		return false
	case errors.As(err, &derr):
		t.deliveryFailed(&t.read, m, err)
		return !t.failed()
	case err != nil:
		t.fail(err)
		return false
	case t.failed():
		f.staged.Abort()
		return false
	}
	if !t.queue.put(f) {
		f.staged.Abort() // the transfer was given up meanwhile
		return false
	}
	return true
}

// sequence delivers the staged messages in server order, a batch at a
// time: it waits for each to be synced, records the batch's Maildir file
// names as pending (so that a crash after a message became visible, but
// before its UID was recorded, leaves a record that the next poll
// resolves by finding the file, instead of fetching it again), publishes
// the messages in order, flushes the deliverer (fsync of the Maildir's
// new/), records their UIDs in one transaction, and only then queues
// their DELEs for the writer. Each batch costs two commits of the store
// however small its messages: a batch gathers what arrives within
// batchWait, up to batch messages, and the last one goes at once
// (batchQueue).
func (t *transferRun) sequence(ctx context.Context) {
	dir := ""
	if t.hasUIDL {
		dir = t.s.maildir()
	}
	// The committer waits for what the sequencer published, a batch
	// behind it: a deliverer that waits on another machine (deliver.Marker:
	// IMAP) has the next batch sent while the answers for the last are on
	// their way. The channel holds none: the batch being committed and
	// the one published behind it, waiting to be taken, are the two at
	// most published and not committed (TestPollOverlapsRemoteWaits).
	commits := make(chan *publishedBatch)
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		defer t.dele.close()
		for pb := range commits {
			if err := t.commitBatch(pb); err != nil {
				t.fail(err)
			}
		}
	}()
	defer func() {
		close(commits)
		<-committed
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch := t.queue.take(make([]*fetched, 0, t.s.tune.batch), timer)
		if len(batch) == 0 {
			return
		}
		t.syncBatch(ctx, batch)
		commits <- t.publishBatch(ctx, dir, batch)
	}
}

// syncBatch makes the batch's messages durable where they can be
// (deliver.Syncer) before any is published: up to tune.syncers at once,
// since the fsyncs of small files overlap, which a slow disk rewards. The
// goroutines are started per batch, not per message.
func (t *transferRun) syncBatch(ctx context.Context, batch []*fetched) {
	var todo []*fetched
	for _, f := range batch {
		if _, ok := f.staged.(deliver.Syncer); ok {
			todo = append(todo, f)
		}
	}
	workers := min(t.s.tune.syncers, len(todo))
	if workers <= 1 {
		for _, f := range todo {
			f.syncErr = f.staged.(deliver.Syncer).Sync(ctx)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(todo)); i = next.Add(1) - 1 {
				f := todo[i]
				f.syncErr = f.staged.(deliver.Syncer).Sync(ctx)
			}
		}()
	}
	wg.Wait()
}

// publishedBatch is a batch the sequencer published, for the committer.
type publishedBatch struct {
	batch []*fetched   // in server order; a message that failed has pubErr
	wait  func() error // makes the published messages durable
	// recorded: each UID was recorded as its message was published
	// (deliver.EachDurable).
	recorded bool
	// err is a failure of the store: what was published before it is
	// committed, and the transfer ends.
	err error
}

// publishBatch publishes one batch in order (see sequence): it records
// the messages as pending, publishes those whose sync went well, and
// returns them with the wait that will make them durable (the
// deliverer's Mark, else its Flush).
func (t *transferRun) publishBatch(ctx context.Context, dir string, batch []*fetched) *publishedBatch {
	s := t.s
	pb := &publishedBatch{batch: batch}
	if t.down.Load() {
		// The target could not be reached or refused the login: the
		// messages stay on the server, untried, for the next poll.
		for _, f := range batch {
			f.staged.Abort()
		}
		return pb
	}
	good := make([]*fetched, 0, len(batch))
	for _, f := range batch {
		if f.syncErr != nil {
			f.pubErr = f.syncErr
			f.staged.Abort()
			t.failedInARow(f.syncErr)
			continue
		}
		good = append(good, f)
	}
	// A target whose every Publish is final (deliver.EachDurable) has
	// each message recorded as pending just before it is published, and
	// its UID as delivered as soon as it is: a crash then leaves unknown
	// only the message being published, not the batch, and its record's
	// time is its own (the Gmail target's settle_grace counts from it).
	if ed, ok := s.d.(deliver.EachDurable); ok && t.hasUIDL {
		pb.recorded = ed.EachDurable()
	}
	pend := func(fs []*fetched) error {
		if !t.hasUIDL {
			return nil
		}
		records := make([]uidstore.Pending, 0, len(fs))
		for _, f := range fs {
			if r, ok := pendingRecord(f, dir); ok {
				records = append(records, r)
			}
		}
		return s.store.Pend(s.acct.Key(), records)
	}
	if !pb.recorded && len(good) > 0 {
		if err := pend(good); err != nil {
			for _, f := range good {
				f.staged.Abort()
			}
			pb.err = err
			return pb
		}
	}
	for i, f := range good {
		if pb.recorded {
			if err := pend(good[i : i+1]); err != nil {
				for _, rest := range good[i:] {
					rest.staged.Abort()
				}
				pb.err = err
				break
			}
		}
		if err := f.staged.Publish(ctx); err != nil {
			f.staged.Abort()
			f.pubErr = err
			var de *deliver.Error
			if errors.As(err, &de) && de.Down {
				t.targetDown(err, good[i:])
				break
			}
			t.failedInARow(err)
			continue
		}
		t.failures.Store(0)
		if pb.recorded {
			if err := s.store.Record(s.acct.Key(), f.uid); err != nil {
				// Delivered and not recorded: its pending record
				// stays, for the next poll to settle.
				f.staged.Abort()
				for _, rest := range good[i+1:] {
					rest.staged.Abort()
				}
				pb.err = err
				break
			}
		}
		f.published = true
	}
	if mk, ok := s.d.(deliver.Marker); ok {
		pb.wait = mk.Mark()
	} else {
		pb.wait = s.d.Flush
	}
	return pb
}

// pendingRecord returns the pending record of f, and whether it has one:
// a target's Ref, or a Maildir's file name in dir.
func pendingRecord(f *fetched, dir string) (uidstore.Pending, bool) {
	switch st := f.staged.(type) {
	case deliver.Referenced:
		r := st.Ref()
		return uidstore.Pending{UID: f.uid, Kind: r.Kind, Dir: r.Target, Name: r.Key}, true
	case deliver.Named:
		if dir != "" {
			return uidstore.Pending{UID: f.uid, Dir: dir, Name: st.Name()}, true
		}
	}
	return uidstore.Pending{}, false
}

// targetDown ends the transfer after a failure that no other message
// would fare better with (deliver.Error.Down: the IMAP server cannot be
// reached, or refuses the login): trying each message in turn would
// only repeat the refused login, or the wait for a timeout. rest (the
// message that failed first) were recorded as pending and never sent:
// their records go.
func (t *transferRun) targetDown(err error, rest []*fetched) {
	s := t.s
	t.down.Store(true)
	uids := make([]string, 0, len(rest))
	for _, f := range rest {
		f.staged.Abort()
		uids = append(uids, f.uid)
	}
	if t.hasUIDL && len(uids) > 0 {
		if uerr := s.store.Unpend(s.acct.Key(), uids...); uerr != nil {
			// Harmless: the next poll finds them missing at the target.
			s.log.Warn("could not drop pending records of messages never sent", "err", uerr)
		}
	}
	t.fail(err)
}

// commitBatch finishes a published batch: it counts the failures, waits
// for the published messages to be durable, commits their UIDs in one
// transaction and only then queues their DELEs. A message whose sync or
// publish failed is left on the server, its pending record resolved by
// the next poll; a failure of the store or of the wait is returned and
// ends the transfer. After a fatal failure it still commits (the
// messages are safely delivered; forgetting them would mean fetching
// them again) but queues no DELE.
func (t *transferRun) commitBatch(pb *publishedBatch) error {
	s := t.s
	published := make([]*fetched, 0, len(pb.batch))
	for _, f := range pb.batch {
		if !f.published {
			if f.pubErr != nil {
				t.countFailed(&t.committed, f.message, f.pubErr)
			}
			continue
		}
		published = append(published, f)
	}
	if len(published) == 0 {
		return pb.err
	}
	if err := pb.wait(); err != nil {
		return err
	}
	if t.hasUIDL && !pb.recorded {
		uids := make([]string, len(published))
		for i, f := range published {
			uids[i] = f.uid
		}
		if err := s.store.Record(s.acct.Key(), uids...); err != nil {
			return err
		}
	}
	nums := make([]int, 0, len(published))
	for _, f := range published {
		t.committed.delivered++
		t.committed.bytes += f.size
		nums = append(nums, f.num)
	}
	if s.progressFn != nil {
		// The committer's own counts, and no lock held: the callback is
		// the user's, and may take its time (a terminal to draw on).
		s.progress.Done, s.progress.DoneBytes = t.committed.delivered, t.committed.bytes
		s.progressFn(s.progress)
	}
	for _, f := range published {
		s.log.Debug("delivered", "uid", f.uid, "number", f.num, "size", f.size, "subject", f.subject)
	}
	if !s.acct.Keep && !t.failed() {
		t.dele.push(nums...)
	}
	return pb.err
}

// stage streams one message into the deliverer's Stage, with the
// Received field in front. A failure of the stream is returned as is; a
// failure of the target as *deliver.Error.
func (s *session) stage(ctx context.Context, m message, body *pop3.MessageReader) (*fetched, error) {
	limit, space := s.readLimit()
	src := &sourceReader{r: body, limit: limit}
	logging := s.log.Enabled(ctx, slog.LevelDebug)
	if logging {
		src.head = &bytes.Buffer{}
	}
	added, r := s.addedFields(src)
	if s.acct.AddReceived {
		added += s.received(m)
	}
	if added != "" {
		r = io.MultiReader(strings.NewReader(added), r)
	}
	st, err := s.d.Stage(ctx, r, deliver.Envelope{Recipient: s.acct.Recipient, Prepended: int64(len(added))})
	if src.over {
		if st != nil {
			st.Abort()
		}
		tl := &tooLargeError{listed: m.size, listedKnown: m.sizeKnown, limit: limit, space: space}
		if space {
			// Reading on would only fill the disk: the caller ends the
			// transfer (and drops the connection).
			return nil, tl
		}
		// Read the rest without keeping it, so that the connection stays
		// in step for the next reply; a message without end is bounded
		// by the poll's deadline.
		if err := body.Close(); err != nil {
			return nil, err
		}
		tl.got = body.Size()
		return nil, tl
	}
	var derr *deliver.Error
	if err != nil && !errors.As(err, &derr) {
		// The stream failed (a deliverer returns that unwrapped): the
		// message was cut short, a network failure.
		if st != nil {
			st.Abort()
		}
		return nil, err
	}
	if err != nil {
		body.Close() // keep the connection usable for the next reply
		return nil, err
	}
	if !src.eof {
		st.Abort()
		return nil, fmt.Errorf("internal error: the deliverer did not read all of message %d", m.num)
	}
	f := &fetched{message: m, staged: st, size: body.Size()}
	s.staged(f.size)
	if logging {
		f.subject = subject(src.head.Bytes())
	}
	return f, nil
}

// The octets a message may run past size_limit before it is abandoned:
// servers' sizes are not the octets a client stores (line ends, fields a
// server adds), and a limit should not misfire on that.
const (
	sizeSlackMin      = 64 << 10
	sizeSlackFraction = 10 // percent
)

// readLimit returns how many octets the next message may have: size_limit
// with slack, or less if the target's file system has less room than that
// (space reports the latter); 0 for no limit.
func (s *session) readLimit() (limit int64, space bool) {
	if sl := s.acct.SizeLimit; sl > 0 {
		limit = sl + max(sizeSlackMin, sl*sizeSlackFraction/100)
	}
	free, ok := s.room()
	if !ok {
		return limit, false
	}
	if room := max(free, 1); limit == 0 || room < limit {
		return room, true
	}
	return limit, false
}

// roomRefresh is how often the target's free space is asked for again;
// in between, what this poll staged is taken off the last answer. A
// statfs a message (two, and two stats, for an mbox) is a cost on the
// per-message path that a fast disk notices.
const roomRefresh = 250 * time.Millisecond

// room returns the target's room (deliver.SpaceReporter), less what was
// staged since it was last asked; ok is false if the target cannot say.
// Only the reader calls it, and staged.
func (s *session) room() (free int64, ok bool) {
	sr, isReporter := s.d.(deliver.SpaceReporter)
	if !isReporter {
		return 0, false
	}
	if now := time.Now(); s.space.at.IsZero() || now.Sub(s.space.at) >= roomRefresh {
		f, err := sr.FreeSpace()
		if err != nil {
			s.space.at = time.Time{}
			return 0, false
		}
		s.space.at, s.space.free, s.space.used = now, f, 0
	}
	return s.space.free - s.space.used, true
}

// staged takes a staged message's octets off the room last asked for.
func (s *session) staged(n int64) { s.space.used += n }

// tooLargeError is a message abandoned part-way: larger than size_limit
// (with slack) although its listing said otherwise, or larger than the
// room left on the target's file system.
type tooLargeError struct {
	listed      int64
	listedKnown bool
	got         int64 // octets it turned out to have; 0 if not read to its end
	limit       int64
	space       bool
}

func (e *tooLargeError) Error() string {
	var b strings.Builder
	if e.space {
		fmt.Fprintf(&b, "stopped reading a message at %d octets, to leave the file system it goes to its reserve (5%%, at most %d MiB) free", e.limit, deliver.MaxReserve>>20)
	} else {
		fmt.Fprintf(&b, "message larger than size_limit (%d octets with slack) left on the server", e.limit)
		if e.got > 0 {
			fmt.Fprintf(&b, ": it has %d octets", e.got)
		}
	}
	if e.listedKnown {
		fmt.Fprintf(&b, " (the server listed %d)", e.listed)
	}
	return b.String()
}

// numQueue is an unbounded queue of message numbers with a close.
type numQueue struct {
	mu     sync.Mutex
	nums   []int
	closed bool
	ready  chan struct{} // has a token when nums is not empty or the queue is closed
}

func newNumQueue() *numQueue { return &numQueue{ready: make(chan struct{}, 1)} }

func (q *numQueue) push(nums ...int) {
	q.mu.Lock()
	q.nums = append(q.nums, nums...)
	q.mu.Unlock()
	q.signal()
}

func (q *numQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

func (q *numQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take returns and removes everything queued.
func (q *numQueue) take() []int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.nums
	q.nums = nil
	return n
}

// wait blocks until something is queued or the queue is closed; it
// reports false once the queue is closed (there may still be numbers to
// take).
func (q *numQueue) wait() bool {
	<-q.ready
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.nums) > 0 {
		// Leave a token for the next wait if the queue was closed meanwhile.
		if q.closed {
			q.signal()
		}
		return true
	}
	return !q.closed
}
