package uidstore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestOpenRefusesDirOthersCanWrite: a state directory group or others can
// write in (or another user owns) is refused, with fs.ErrPermission, before
// the store in it is opened or made: whoever can write there can put a
// store of theirs in place, saying that mail never delivered was.
func TestOpenRefusesDirOthersCanWrite(t *testing.T) {
	for _, mode := range []fs.FileMode{0o777, 0o770, 0o1777} {
		dir := filepath.Join(t.TempDir(), "state")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, mode)
		s, err := Open(filepath.Join(dir, "uids.db"), 0)
		if err == nil {
			s.Close()
			t.Errorf("mode %04o: the store opened", mode)
			continue
		}
		var oe *OpenError
		if !errors.As(err, &oe) || !errors.Is(err, fs.ErrPermission) {
			t.Errorf("mode %04o: %v, want an *OpenError with fs.ErrPermission", mode, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "uids.db")); err == nil {
			t.Errorf("mode %04o: the store was made", mode)
		}
	}
	if os.Geteuid() == 0 {
		dir := filepath.Join(t.TempDir(), "state")
		os.Mkdir(dir, 0o700)
		os.Chown(dir, 65534, 65534)
		if s, err := Open(filepath.Join(dir, "uids.db"), 0); err == nil || !errors.Is(err, fs.ErrPermission) {
			if s != nil {
				s.Close()
			}
			t.Errorf("a directory of another user: %v", err)
		}
	}
	// Ours, 0700 or 0755, and one still to be made, are used.
	for _, mode := range []fs.FileMode{0o700, 0o755} {
		dir := filepath.Join(t.TempDir(), "state")
		os.Mkdir(dir, mode)
		os.Chmod(dir, mode)
		s, err := Open(filepath.Join(dir, "uids.db"), 0)
		if err != nil {
			t.Fatalf("mode %04o: %v", mode, err)
		}
		s.Close()
	}
	s, err := Open(filepath.Join(t.TempDir(), "new", "uids.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}
