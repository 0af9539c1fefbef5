package deliver

import "io"

// copyBufSize is the buffer a message is copied through: a small message
// goes out in one write.
const copyBufSize = 64 << 10

// copyFull copies r to w through buf, filling buf before each write: a
// reader that returns a line at a time would otherwise cost a write
// system call a line. (io.Copy into an *os.File also allocates a buffer
// per call.) A failure of either side is returned as is; r's io.EOF ends
// the copy without error. (Not io.ReadFull, which would turn a reader's
// own io.ErrUnexpectedEOF, a message cut short, into a clean end.)
func copyFull(w io.Writer, r io.Reader, buf []byte) (int64, error) {
	var written int64
	for {
		n, empty := 0, 0
		var rerr error
		for n < len(buf) && rerr == nil {
			var m int
			m, rerr = r.Read(buf[n:])
			n += m
			if m == 0 && rerr == nil {
				if empty++; empty >= 100 {
					rerr = io.ErrNoProgress
				}
			}
		}
		if n > 0 {
			m, werr := w.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, werr
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}
