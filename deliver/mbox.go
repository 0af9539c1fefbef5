package deliver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Lock timings of an mbox.
const (
	// DefaultMboxLockTimeout bounds the wait for an mbox's locks when
	// Mbox.LockTimeout is zero.
	DefaultMboxLockTimeout = 60 * time.Second
	// staleDotLock is the age after which a dot-lock file is taken to be
	// left behind by a crashed program and removed (as procmail and
	// mutt do).
	staleDotLock = 5 * time.Minute
	lockRetry    = 50 * time.Millisecond
)

// Mbox appends messages to an mbox file in the mboxrd format: each message
// starts with a "From SENDER DATE" line, every line of the message that
// matches ">*From " gets one more ">", and a blank line ends it. A reader
// that removes one ">" from such lines gets the message back exactly.
//
// While it writes, Mbox holds both locks mail programs use on mbox files:
// a dot-lock (FILE.lock, created exclusively; one older than five minutes
// is taken as stale) and an fcntl write lock on the file, taken so that it
// also excludes other Mbox values of this process (see tryLockFile).
// Where the directory does not let it create FILE.lock (a system spool
// directory), the file lock alone is used, and still keeps two accounts
// of one daemon apart. A failed write is cut off again, so the
// file never holds part of a message. Flush fsyncs what was written
// (and the directory, when the file was created).
type Mbox struct {
	Path        string
	LockTimeout time.Duration // how long to wait for the locks; 0 means DefaultMboxLockTimeout
	SpoolDir    string        // where to spool; "" means os.TempDir()

	noDotLock bool // tests: as if the directory did not let us create FILE.lock

	mu      sync.Mutex
	pending []*os.File // written, to fsync at Flush
	created bool       // the file was created: fsync its directory too
}

func (m *Mbox) target() string { return "mbox " + m.Path }

// Stage implements Deliverer: it spools the message and reads its
// envelope sender for the From line.
func (m *Mbox) Stage(ctx context.Context, r io.Reader, env Envelope) (Staged, error) {
	f, err := spool(m.SpoolDir, m.target(), r)
	if err != nil {
		return nil, err
	}
	sender, err := spoolSender(f)
	if err != nil {
		f.Close()
		return nil, &Error{Target: m.target(), Temporary: true, Err: err}
	}
	return &stagedMbox{m: m, spool: f, sender: sender, date: time.Now()}, nil
}

// Flush implements Deliverer: it fsyncs the file for every message
// published since the last Flush.
func (m *Mbox) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var first error
	for _, f := range m.pending {
		if err := f.Sync(); err != nil && first == nil {
			first = &Error{Target: m.target(), Temporary: true, Err: fmt.Errorf("fsync: %w", err)}
		}
		f.Close()
	}
	m.pending = nil
	if m.created && first == nil {
		if err := syncDir(filepath.Dir(m.Path)); err != nil {
			first = &Error{Target: m.target(), Temporary: true, Err: fmt.Errorf("fsync directory: %w", err)}
		} else {
			m.created = false
		}
	}
	return first
}

// Close implements Deliverer.
func (m *Mbox) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.pending {
		f.Close()
	}
	m.pending = nil
	return nil
}

type stagedMbox struct {
	m      *Mbox
	spool  *os.File
	sender string
	date   time.Time
}

// Abort implements Staged.
func (s *stagedMbox) Abort() {
	if s.spool != nil {
		s.spool.Close()
		s.spool = nil
	}
}

// Publish appends the message under both locks.
func (s *stagedMbox) Publish(ctx context.Context) error {
	defer s.Abort()
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	f, created, err := openMbox(m.Path)
	if err != nil {
		return &Error{Target: m.target(), Temporary: isTemporaryFS(err), Err: err}
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	timeout := m.LockTimeout
	if timeout <= 0 {
		timeout = DefaultMboxLockTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	unlock, err := lockMbox(ctx, f, m.Path, !m.noDotLock)
	if err != nil {
		return &Error{Target: m.target(), Temporary: true, Err: err}
	}
	defer unlock()
	fi, err := f.Stat()
	if err != nil {
		return &Error{Target: m.target(), Temporary: true, Err: err}
	}
	start := fi.Size()
	if err := s.write(f, start); err != nil {
		// Cut the partial message off again, so that the mbox stays a
		// sequence of whole messages.
		if terr := f.Truncate(start); terr != nil {
			err = fmt.Errorf("%w; cutting off the partial message failed too: %v", err, terr)
		}
		return &Error{Target: m.target(), Temporary: isTemporaryFS(err), Err: err}
	}
	keep = true
	m.pending = append(m.pending, f)
	m.created = m.created || created
	return nil
}

// write appends the From line, the quoted message and the blank line that
// ends it. An mbox whose last message lacks its final blank line gets one
// first, so that the new From line starts a message.
func (s *stagedMbox) write(f *os.File, size int64) error {
	w := bufio.NewWriterSize(f, 64<<10)
	if size > 0 {
		var tail [2]byte
		n, err := f.ReadAt(tail[:], max(size-2, 0))
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		switch {
		case n == 2 && tail[0] == '\n' && tail[1] == '\n':
		case n >= 1 && tail[n-1] == '\n':
			w.WriteString("\n")
		default:
			w.WriteString("\n\n")
		}
	}
	sender := s.sender
	if sender == "" {
		sender = "MAILER-DAEMON"
	}
	fmt.Fprintf(w, "From %s %s\n", fromLineAddr(sender), s.date.Format("Mon Jan _2 15:04:05 2006"))
	q := &mboxrdWriter{w: w, bol: true}
	if _, err := io.Copy(q, s.spool); err != nil {
		return err
	}
	if !q.bol || q.pending() {
		q.flushPending()
		w.WriteString("\n")
	}
	w.WriteString("\n")
	return w.Flush()
}

// fromLineAddr makes an address fit the From line: no white space or
// control characters.
func fromLineAddr(a string) string {
	b := []byte(a)
	for i, c := range b {
		if c <= ' ' || c == 0x7f {
			b[i] = '_'
		}
	}
	return string(b)
}

// mboxrdWriter quotes lines that match ">*From " with one more ">",
// streaming, in constant memory.
type mboxrdWriter struct {
	w       *bufio.Writer
	bol     bool // at the start of a line
	gts     int  // '>'s seen at the start of this line, not yet written
	matched int  // bytes of "From " matched after them
	decided bool // this line's quoting is settled: copy to its end
}

const fromPrefix = "From "

func (q *mboxrdWriter) pending() bool { return q.gts > 0 || q.matched > 0 }

func (q *mboxrdWriter) flushPending() {
	for ; q.gts > 0; q.gts-- {
		q.w.WriteByte('>')
	}
	q.w.WriteString(fromPrefix[:q.matched])
	q.matched = 0
}

func (q *mboxrdWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		if q.bol {
			q.bol, q.decided, q.gts, q.matched = false, false, 0, 0
		}
		if !q.decided {
			switch {
			case c == '>' && q.matched == 0:
				q.gts++
				continue
			case c == fromPrefix[q.matched]:
				q.matched++
				if q.matched == len(fromPrefix) {
					q.w.WriteByte('>')
					q.flushPending()
					q.decided = true
				}
				continue
			default:
				q.flushPending()
				q.decided = true
			}
		}
		q.w.WriteByte(c)
		if c == '\n' {
			q.bol = true
		}
	}
	return len(p), nil
}

// openMbox opens path for reading (to look at its end) and appending,
// creating it (mode 600) if missing.
func openMbox(path string) (f *os.File, created bool, err error) {
	f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, err
		}
		f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return openMbox(path) // created by someone else meanwhile
		}
		created = err == nil
	}
	if err != nil {
		return nil, false, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, false, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, false, fmt.Errorf("%s is not a regular file", path)
	}
	return f, created, nil
}

// lockMbox takes the dot-lock (if dot), then the file lock (see
// tryLockFile), waiting until ctx is done; it returns the function that
// releases both.
func lockMbox(ctx context.Context, f *os.File, path string, dot bool) (func(), error) {
	unlockDot := func() {}
	if dot {
		var err error
		if unlockDot, err = dotLock(ctx, path+".lock"); err != nil {
			return nil, err
		}
	}
	for {
		err := tryLockFile(f)
		if err == nil {
			break
		}
		if !errors.Is(err, errLockHeld) && !errors.Is(err, unix.EINTR) {
			unlockDot()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if err := sleep(ctx, lockRetry); err != nil {
			unlockDot()
			return nil, fmt.Errorf("another program (or another account of this one) holds the fcntl lock of %s: %w", path, err)
		}
	}
	return func() {
		unlockFile(f)
		unlockDot()
	}, nil
}

// errLockHeld is tryLockFile's answer when another holds the lock.
var errLockHeld = errors.New("the file is locked")

// dotLock creates the lock file exclusively, holding this process's ID
// and host name. A lock file older than staleDotLock is removed, and so
// is one that a popfetch on this host left when it died (killed, say:
// its process is gone), so that the next run does not wait minutes for
// it; a directory where it cannot be created (no write permission) means
// no dot-lock, as with mutt. Two popfetch processes that both take a
// stale lock for theirs are still kept apart by the fcntl lock.
func dotLock(ctx context.Context, lock string) (func(), error) {
	host, _ := os.Hostname()
	for {
		f, err := os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			f.WriteString(strconv.Itoa(os.Getpid()) + " " + host + "\n")
			f.Close()
			return func() { os.Remove(lock) }, nil
		}
		if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EROFS) {
			return func() {}, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("dot-lock: %w", err)
		}
		if fi, err := os.Stat(lock); err == nil && time.Since(fi.ModTime()) > staleDotLock {
			os.Remove(lock)
			continue
		}
		if deadHolder(lock, host) {
			os.Remove(lock)
			continue
		}
		if err := sleep(ctx, lockRetry); err != nil {
			return nil, fmt.Errorf("another program holds %s: %w", lock, err)
		}
	}
}

// deadHolder reports whether the dot-lock file lock was left by a
// popfetch on this host whose process no longer exists: it holds "PID
// HOST" with HOST this host's name, and kill(PID, 0) finds no process.
// A lock file of any other form (another program's, another host's) is
// never judged this way.
func deadHolder(lock, host string) bool {
	f, err := os.Open(lock)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, 256)
	n, _ := io.ReadFull(f, buf)
	fields := strings.Fields(string(buf[:n]))
	if host == "" || len(fields) != 2 || fields[1] != host {
		return false
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return errors.Is(unix.Kill(pid, 0), unix.ESRCH)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
