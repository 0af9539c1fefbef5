package deliver

import (
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// openUnnamed opens an unnamed file in dir (O_TMPFILE), to be named by
// nameUnnamed once it is durable: relative to dirFile, dir open, unless
// that is nil. It returns nil and no error where the file system cannot
// make one.
func openUnnamed(dirFile *os.File, dir string) (*os.File, error) {
	at, path := unix.AT_FDCWD, dir
	if dirFile != nil {
		at, path = int(dirFile.Fd()), "."
	}
	fd, err := unix.Openat(at, path, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), "/proc/self/fd/"+strconv.Itoa(fd)), nil
	}
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
		return nil, nil
	}
	return nil, &os.PathError{Op: "open", Path: dir, Err: err}
}

// nameUnnamed links a file from openUnnamed to path. linkat with
// AT_EMPTY_PATH needs a privilege; through /proc/self/fd it does not.
func nameUnnamed(f *os.File, path string) error {
	if err := unix.Linkat(unix.AT_FDCWD, f.Name(), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW); err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: path, Err: err}
	}
	return nil
}
