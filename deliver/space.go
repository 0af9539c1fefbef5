package deliver

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// SpaceReporter is implemented by the targets that write to local file
// systems: FreeSpace returns the octets a message may still take where
// the target writes it (the least of them where it writes in two places,
// as a spool and an mbox), leaving a reserve free: 5% of the file system,
// at most MaxReserve. A poll stops before a message fills the disk,
// whatever the server said of its size.
type SpaceReporter interface {
	FreeSpace() (int64, error)
}

// MaxReserve is the most FreeSpace keeps free on a file system.
const MaxReserve = 64 << 20

// freeSpace returns the octets available to unprivileged users on the
// file system that holds path, less the reserve.
func freeSpace(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	// The field types differ between systems: convert each.
	bsize := int64(st.Bsize)
	avail, total := int64(st.Bavail)*bsize, int64(st.Blocks)*bsize
	return avail - min(total/20, MaxReserve), nil
}

// spoolDir returns the directory spool writes to.
func spoolDir(dir string) string {
	if dir == "" {
		return os.TempDir()
	}
	return dir
}

// leastFree returns the least free space of the file systems holding
// paths.
func leastFree(paths ...string) (int64, error) {
	least := int64(-1)
	for _, p := range paths {
		n, err := freeSpace(p)
		if err != nil {
			return 0, err
		}
		if least < 0 || n < least {
			least = n
		}
	}
	return least, nil
}

// FreeSpace implements SpaceReporter.
func (m *Maildir) FreeSpace() (int64, error) { return freeSpace(m.dir) }

// FreeSpace implements SpaceReporter: the spool and the mbox's directory.
// A message is in both at once, so where they share a file system it may
// take only half of that one's room.
func (m *Mbox) FreeSpace() (int64, error) {
	spool, dir := spoolDir(m.SpoolDir), filepath.Dir(m.Path)
	room, err := leastFree(spool, dir)
	if err != nil {
		return 0, err
	}
	var a, b unix.Stat_t
	if unix.Stat(spool, &a) == nil && unix.Stat(dir, &b) == nil && a.Dev == b.Dev {
		room /= 2
	}
	return room, nil
}

// FreeSpace implements SpaceReporter: the spool the message waits in.
func (m *MDA) FreeSpace() (int64, error) { return freeSpace(spoolDir(m.SpoolDir)) }

// FreeSpace implements SpaceReporter: the spool the message waits in.
func (l *LMTP) FreeSpace() (int64, error) { return freeSpace(spoolDir(l.SpoolDir)) }
