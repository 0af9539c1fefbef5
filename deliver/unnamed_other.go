//go:build !linux

package deliver

import (
	"errors"
	"os"
)

// openUnnamed reports that no unnamed file can be made: O_TMPFILE is
// Linux's. Stage then writes to tmp/ and Publish renames, as the Maildir
// specification has it.
func openUnnamed(dirFile *os.File, dir string) (*os.File, error) { return nil, nil }

// nameUnnamed is never called where openUnnamed makes no file.
func nameUnnamed(f *os.File, path string) error {
	return errors.New("deliver: no unnamed files on this system")
}
