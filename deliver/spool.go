package deliver

import (
	"fmt"
	"io"
	"os"
)

// spool copies a message to an unlinked temporary file in dir ("" means
// os.TempDir()), positioned at its start, so that a target that needs the
// whole message first (an MDA, an mbox, an LMTP server) never sees an
// incomplete one. A failure of r is returned unwrapped; a failure of the
// spool as *Error with target.
func spool(dir, target string, r io.Reader) (*os.File, error) {
	f, err := os.CreateTemp(dir, "popfetch-spool-*")
	if err != nil {
		return nil, &Error{Target: target, Temporary: true, Err: fmt.Errorf("spool: %w", err)}
	}
	os.Remove(f.Name()) // unlinked: gone when closed, whatever happens
	src := &errReader{r: r}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		if src.err != nil {
			return nil, src.err // the message is incomplete
		}
		return nil, &Error{Target: target, Temporary: true, Err: fmt.Errorf("spool: %w", err)}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, &Error{Target: target, Temporary: true, Err: fmt.Errorf("spool: %w", err)}
	}
	return f, nil
}

// spoolSender returns the envelope sender of the spooled message (see
// envelopeSender) and rewinds the spool.
func spoolSender(f *os.File) (string, error) {
	sender := envelopeSender(f)
	_, err := f.Seek(0, io.SeekStart)
	return sender, err
}
