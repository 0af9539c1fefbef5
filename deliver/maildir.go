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
// A message is written to tmp/ under a unique name, fsync'd, linked into
// new/ under the same name (link, unlike rename, never replaces a file)
// and removed from tmp/; then new/ is fsync'd so that the new entry
// survives a crash. A message whose reader fails is removed from tmp/ and
// never appears in new/.
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

// Deliver implements Deliverer.
func (m *Maildir) Deliver(ctx context.Context, r io.Reader, env Envelope) error {
	_, err := m.deliver(r)
	return err
}

// deliver does the work of Deliver and returns the message's file name.
func (m *Maildir) deliver(r io.Reader) (string, error) {
	fail := func(err error) error {
		return &Error{Target: "maildir " + m.dir, Temporary: isTemporaryFS(err), Err: err}
	}
	name, err := m.uniqueName(time.Now())
	if err != nil {
		return "", fail(err)
	}
	tmpPath := filepath.Join(m.dir, "tmp", name)
	f, err := os.OpenFile(tmpPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fail(err)
	}
	abort := func(err error) (string, error) {
		f.Close()
		os.Remove(tmpPath)
		return "", err
	}
	src := &errReader{r: r}
	if _, err := io.Copy(f, src); err != nil {
		if src.err != nil {
			return abort(src.err) // incomplete: never published
		}
		return abort(fail(err))
	}
	if err := f.Sync(); err != nil {
		return abort(fail(err))
	}
	if err := f.Close(); err != nil {
		os.Remove(tmpPath)
		return "", fail(err)
	}
	newPath := filepath.Join(m.dir, "new", name)
	if err := publish(tmpPath, newPath); err != nil {
		os.Remove(tmpPath)
		return "", fail(err)
	}
	if err := syncDir(filepath.Join(m.dir, "new")); err != nil {
		// The file is in new/ but may not survive a crash. Report failure:
		// the message stays on the server, and at worst arrives twice.
		return "", fail(err)
	}
	return name, nil
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
