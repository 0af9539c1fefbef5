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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-maildir"
)

// Maildir delivers into a Maildir (https://cr.yp.to/proto/maildir.html).
//
// Stage writes a message to tmp/ under a unique name; Publish fsyncs it,
// links it into new/ under the same name (link, unlike rename, never
// replaces a file) and removes it from tmp/; Flush fsyncs new/ so that
// the new entries survive a crash. A message whose reader fails is
// removed from tmp/ and never appears in new/. Maildir is safe for use by
// several goroutines.
type Maildir struct {
	dir  string
	host string
	pid  int
	seq  atomic.Uint64
}

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
	return &Maildir{dir: dir, host: host, pid: os.Getpid()}, nil
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

// Stage implements Deliverer: it writes the message to tmp/, without
// fsync.
func (m *Maildir) Stage(ctx context.Context, r io.Reader, env Envelope) (Staged, error) {
	name, err := m.uniqueName(time.Now())
	if err != nil {
		return nil, m.fail(err)
	}
	st := &stagedFile{m: m, name: name, tmpPath: filepath.Join(m.dir, "tmp", name)}
	st.f, err = os.OpenFile(st.tmpPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, m.fail(err)
	}
	src := &errReader{r: r}
	if _, err := io.Copy(st.f, src); err != nil {
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

// stagedFile is a message written to tmp/.
type stagedFile struct {
	m       *Maildir
	name    string
	tmpPath string
	f       *os.File // nil once closed
	done    bool
}

// Name returns the message's file name (the same in tmp/ and new/).
func (s *stagedFile) Name() string { return s.name }

// Publish fsyncs the file and links it into new/.
func (s *stagedFile) Publish(ctx context.Context) error {
	if s.done {
		return errors.New("deliver: message published twice")
	}
	if err := s.f.Sync(); err != nil {
		s.Abort()
		return s.m.fail(err)
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		s.Abort()
		return s.m.fail(err)
	}
	if err := publish(s.tmpPath, filepath.Join(s.m.dir, "new", s.name)); err != nil {
		s.Abort()
		return s.m.fail(err)
	}
	s.done = true
	return nil
}

// Abort removes the file from tmp/.
func (s *stagedFile) Abort() {
	if s.done {
		return
	}
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	os.Remove(s.tmpPath)
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
