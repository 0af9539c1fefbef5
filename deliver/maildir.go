package deliver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"time"

	"github.com/emersion/go-maildir"
)

// Maildir delivers into a Maildir (https://cr.yp.to/proto/maildir.html).
//
// Stage writes a message to an unnamed file in new/ (O_TMPFILE): it has no
// name, and so cannot be seen, until Publish fsyncs it and links it into
// new/ under a unique name; if the process dies first, the file vanishes.
// On file systems without O_TMPFILE, Stage writes to tmp/ as the Maildir
// convention has it, and Publish links the file into new/ (link, unlike
// rename, never replaces a file) and removes it from tmp/. Flush fsyncs
// new/ so that the new entries survive a crash. A message whose reader
// fails is never published. Maildir is safe for use by several goroutines.
type Maildir struct {
	dir   string
	host  string
	pid   int
	seq   atomic.Uint64
	noTmp atomic.Bool // the file system has no O_TMPFILE: use tmp/

	// spares are unnamed files made ahead by up to maxCreators goroutines,
	// so that creating a file (the slow part of a small delivery) runs in
	// parallel and not in the way of the caller's reading.
	spares   chan *os.File
	creating atomic.Int32
	creators sync.WaitGroup // the goroutines making spares; Close waits for them
	bufs     sync.Pool      // *[]byte of copyBufSize, for Stage
	mu       sync.Mutex
	closed   bool

	// newDir is new/, open: unnamed files are made relative to it, which
	// spares a walk of the whole path for each message. nil where it
	// could not be opened. A file is still named, and new/ fsync'd, by
	// path: a Maildir moved away during a poll then fails the delivery
	// instead of taking the mail along (TestFaultMaildirDeleted).
	newDir *os.File
}

// Spare files kept ready, and goroutines making them at once.
const (
	maxSpares   = 16
	maxCreators = 4
)

// NewMaildir returns a Maildir deliverer for dir, creating the Maildir
// (dir and its parents, dir/tmp, dir/new, dir/cur, mode 0700) if it does
// not exist.
func NewMaildir(dir string) (*Maildir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, &Error{Target: "maildir " + dir, Err: err}
	}
	if err := maildir.Dir(dir).Init(); err != nil {
		return nil, &Error{Target: "maildir " + dir, Err: err}
	}
	// Remove files left in tmp/ by deliveries that died over 36 hours ago
	// (the Maildir convention); a failure here harms nothing.
	_ = maildir.Dir(dir).Clean()
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	// The Maildir spec: "/" and ":" in the host name are written as \057 and \072.
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	m := &Maildir{dir: dir, host: host, pid: os.Getpid(), spares: make(chan *os.File, maxSpares)}
	if d, err := os.Open(filepath.Join(dir, "new")); err == nil {
		m.newDir = d
	}
	return m, nil
}

// Close releases the spare files (unnamed, they vanish). The Maildir must
// not be used afterwards.
func (m *Maildir) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.creators.Wait() // none may use newDir once it is closed
	for {
		select {
		case f := <-m.spares:
			f.Close()
		default:
			if m.newDir != nil {
				m.newDir.Close()
			}
			return nil
		}
	}
}

// spare returns a ready unnamed file, or nil, and starts making more.
func (m *Maildir) spare() *os.File {
	var f *os.File
	select {
	case f = <-m.spares:
	default:
	}
	for !m.noTmp.Load() && len(m.spares)+int(m.creating.Load()) < maxSpares {
		if n := m.creating.Add(1); n > maxCreators {
			m.creating.Add(-1)
			break
		}
		m.creators.Add(1)
		go func() {
			defer m.creators.Done()
			defer m.creating.Add(-1)
			f, err := m.tmpfile()
			if err != nil || f == nil {
				return
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			if !m.closed {
				select {
				case m.spares <- f:
					return
				default:
				}
			}
			f.Close()
		}()
	}
	return f
}

// buffer returns a copy buffer from the pool, or a new one.
func (m *Maildir) buffer() *[]byte {
	if b, ok := m.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, copyBufSize)
	return &b
}

// Dir returns the Maildir's path.
func (m *Maildir) Dir() string { return m.dir }

// uniqueName returns a name no other delivery uses: seconds, then
// microseconds, pid, a per-process counter and random bytes, then the host.
func (m *Maildir) uniqueName(now time.Time) (string, error) {
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s", now.Unix(), now.Nanosecond()/1000, m.pid,
		m.seq.Add(1), hex.EncodeToString(rnd[:]), m.host), nil
}

// Stage implements Deliverer: it writes the message, without fsync, to an
// unnamed file in new/ (O_TMPFILE), or where the file system cannot do
// that, to a file in tmp/.
func (m *Maildir) Stage(ctx context.Context, r io.Reader, env Envelope) (Staged, error) {
	name, err := m.uniqueName(time.Now())
	if err != nil {
		return nil, m.fail(err)
	}
	st := &stagedFile{m: m, name: name}
	if st.f, err = m.create(name); err != nil {
		return nil, m.fail(err)
	}
	if !strings.HasPrefix(st.f.Name(), "/proc/") {
		st.tmpPath = st.f.Name()
	}
	src := &errReader{r: r}
	buf := m.buffer()
	_, err = copyFull(st.f, src, *buf)
	m.bufs.Put(buf)
	if err != nil {
		st.Abort()
		if src.err != nil {
			return nil, src.err // incomplete: never published
		}
		return nil, m.fail(err)
	}
	return st, nil
}

// Flush implements Deliverer: it fsyncs new/, making the entries of every
// message published so far durable.
func (m *Maildir) Flush() error {
	if err := syncDir(filepath.Join(m.dir, "new")); err != nil {
		return m.fail(err)
	}
	return nil
}

func (m *Maildir) fail(err error) error {
	return &Error{Target: "maildir " + m.dir, Temporary: isTemporaryFS(err), Err: err}
}

// create opens a new file for a message: an unnamed one in new/ if the
// file system can (it has no name until Publish, and vanishes if the
// process dies first), else tmp/name.
func (m *Maildir) create(name string) (*os.File, error) {
	if f := m.spare(); f != nil {
		return f, nil
	}
	f, err := m.tmpfile()
	if f != nil || err != nil {
		return f, err
	}
	return os.OpenFile(filepath.Join(m.dir, "tmp", name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// tmpfile opens an unnamed file in new/. It returns nil and no error if
// the file system (or the system: see tmpfile_other.go) cannot, and
// remembers that.
func (m *Maildir) tmpfile() (*os.File, error) {
	if m.noTmp.Load() {
		return nil, nil
	}
	f, err := openUnnamed(m.newDir, filepath.Join(m.dir, "new"))
	if f == nil && err == nil {
		m.noTmp.Store(true)
	}
	return f, err
}

// stagedFile is a message written but not published.
type stagedFile struct {
	m       *Maildir
	name    string
	tmpPath string   // tmp/name; "" for an unnamed (O_TMPFILE) file
	f       *os.File // nil once closed
	synced  bool
	done    bool
}

// Sync implements Syncer: it fsyncs the file's data.
func (s *stagedFile) Sync(ctx context.Context) error {
	if s.done {
		return errors.New("deliver: message synced after it was published")
	}
	if err := s.f.Sync(); err != nil {
		return s.m.fail(err)
	}
	s.synced = true
	return nil
}

// Publish fsyncs the file (unless Sync did) and links it into new/
// under its name.
func (s *stagedFile) Publish(ctx context.Context) error {
	if s.done {
		return errors.New("deliver: message published twice")
	}
	if !s.synced {
		if err := s.Sync(ctx); err != nil {
			s.Abort()
			return err
		}
	}
	newPath := filepath.Join(s.m.dir, "new", s.name)
	var err error
	if s.tmpPath == "" {
		err = nameUnnamed(s.f, newPath)
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	if err == nil && s.tmpPath != "" {
		err = publish(s.tmpPath, newPath)
	}
	if err != nil {
		s.Abort()
		return s.m.fail(err)
	}
	s.done = true
	return nil
}

// Name returns the file name the message has in new/ once published.
func (s *stagedFile) Name() string { return s.name }

// Abort removes the file from tmp/.
func (s *stagedFile) Abort() {
	if s.done {
		return
	}
	if s.f != nil {
		s.f.Close() // an unnamed file vanishes here
		s.f = nil
	}
	if s.tmpPath != "" {
		os.Remove(s.tmpPath)
	}
	s.done = true
}

// publish moves tmpPath to newPath without ever replacing an existing file:
// link then unlink, or rename where the file system cannot link.
func publish(tmpPath, newPath string) error {
	err := os.Link(tmpPath, newPath)
	if err == nil {
		return os.Remove(tmpPath)
	}
	if errors.Is(err, os.ErrExist) {
		return err
	}
	if _, serr := os.Lstat(newPath); serr == nil {
		return fmt.Errorf("%s exists", newPath)
	}
	return os.Rename(tmpPath, newPath)
}

// syncDir fsyncs a directory so that entries created in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// isTemporaryFS reports file system errors that may clear by themselves.
func isTemporaryFS(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EINTR)
}

// Named is implemented by a Staged message whose place is known before it
// is published: a Maildir's, which will be Dir/new/Name. A caller can
// record that name before Publish and, after a crash, ask FindDelivered
// whether the message arrived.
type Named interface {
	Name() string
}

// FindDelivered reports, for each of names, whether the Maildir dir holds
// a message of that file name: in new/, or in cur/ where a mail reader
// moved it, with its flags after the name (":2,S"; ";" and "!" are taken
// as separators too). Leftover temporary files of those names are removed
// from tmp/, found or not. A Maildir that no longer exists holds nothing.
func FindDelivered(dir string, names []string) ([]bool, error) {
	found := make([]bool, len(names))
	missing := 0
	for i, name := range names {
		if name == "" || strings.ContainsAny(name, "/\x00") {
			return nil, fmt.Errorf("deliver: %q is not a Maildir file name", name)
		}
		if err := os.Remove(filepath.Join(dir, "tmp", name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, &Error{Target: "maildir " + dir, Err: err}
		}
		_, err := os.Lstat(filepath.Join(dir, "new", name))
		switch {
		case err == nil:
			found[i] = true
		case errors.Is(err, os.ErrNotExist):
			missing++
		default:
			return nil, &Error{Target: "maildir " + dir, Err: err}
		}
	}
	if missing == 0 {
		return found, nil
	}
	want := make(map[string]int, missing)
	for i, name := range names {
		if !found[i] {
			want[name] = i
		}
	}
	for _, sub := range []string{"cur", "new"} {
		err := eachName(filepath.Join(dir, sub), func(entry string) {
			base := entry
			if j := strings.IndexAny(entry, ":;!"); j > 0 {
				base = entry[:j]
			}
			if i, ok := want[base]; ok {
				found[i] = true
			}
		})
		if err != nil {
			return nil, &Error{Target: "maildir " + dir, Err: err}
		}
	}
	return found, nil
}

// eachName calls fn for each entry of dir; a missing dir has none.
func eachName(dir string, fn func(string)) error {
	d, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			fn(n)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
