//go:build unix && !linux

package deliver

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// tryLockFile takes an exclusive lock on the whole of f without waiting:
// flock(2) first, which belongs to the open file and so also excludes
// other open files of this process (two accounts of one daemon delivering
// into one mbox), then an fcntl lock, which is what other mail programs
// (mutt, procmail, Dovecot) look at. Open file description locks, which
// would be both at once, are Linux's. A lock held elsewhere is reported as
// errLockHeld.
func tryLockFile(f *os.File) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == unix.EWOULDBLOCK || err == unix.EAGAIN {
		return errLockHeld
	}
	if err != nil {
		return err
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	err = unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk)
	if err == nil {
		return nil
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	if err == unix.EAGAIN || err == unix.EACCES {
		return errLockHeld
	}
	return err
}

// unlockFile releases the locks tryLockFile took.
func unlockFile(f *os.File) error {
	lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: io.SeekStart}
	err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk)
	if ferr := unix.Flock(int(f.Fd()), unix.LOCK_UN); err == nil {
		err = ferr
	}
	return err
}
