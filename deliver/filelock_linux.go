package deliver

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// tryLockFile takes an exclusive lock on the whole of f without waiting.
// It is an open file description lock (F_OFD_SETLK): it excludes other
// processes, which see it as an ordinary fcntl lock (mutt, procmail,
// Dovecot), and other open files of this process too (two accounts of one
// daemon delivering into one mbox), which a classic fcntl lock, held by
// the process, would not. It is released by unlockFile or when f is
// closed. A lock held elsewhere is reported as errLockHeld.
func tryLockFile(f *os.File) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
	if err == unix.EAGAIN || err == unix.EACCES {
		return errLockHeld
	}
	return err
}

// unlockFile releases the lock tryLockFile took.
func unlockFile(f *os.File) error {
	lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: io.SeekStart}
	return unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
}
