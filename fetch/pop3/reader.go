package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// MaxLineLength is the longest response line accepted, in octets including
// the CRLF (RFC 2449 section 4). It bounds status lines and the lines of
// CAPA, LIST and UIDL listings; message content is not bounded by it.
const MaxLineLength = 512

// MaxListingLines bounds the lines of a multi-line listing (CAPA, LIST,
// UIDL), and with it the memory a listing takes: a server that never ends
// one is cut off here. No real POP3 mailbox holds a million messages.
const MaxListingLines = 1_000_000

// readBoundedLine reads one line of at most max octets and returns it
// without its line ending. A longer line is consumed only up to the bound
// and reported as a ProtocolError.
func readBoundedLine(r *bufio.Reader, max int, op string) (string, error) {
	// The common case: the whole line is in the buffer.
	if chunk, err := r.ReadSlice('\n'); err == nil {
		if len(chunk) > max {
			return "", &ProtocolError{Op: op, Msg: "response line longer than the limit"}
		}
		chunk = bytes.TrimSuffix(chunk[:len(chunk)-1], []byte("\r"))
		return string(chunk), nil
	} else if !errors.Is(err, bufio.ErrBufferFull) {
		if errors.Is(err, io.EOF) {
			return "", io.ErrUnexpectedEOF
		}
		return "", err
	} else if len(chunk) > max {
		return "", &ProtocolError{Op: op, Msg: "response line longer than the limit"}
	} else {
		return readLongLine(r, append([]byte(nil), chunk...), max, op)
	}
}

// skipLine reads one line of at most max octets without keeping it and
// reports whether it was the "." that ends a listing.
func skipLine(r *bufio.Reader, max int, op string) (end bool, err error) {
	chunk, err := r.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull), err == nil && len(chunk) > max:
		return false, &ProtocolError{Op: op, Msg: "response line longer than the limit"}
	case errors.Is(err, io.EOF):
		return false, io.ErrUnexpectedEOF
	case err != nil:
		return false, err
	}
	return string(bytes.TrimSuffix(chunk, []byte("\r\n"))) == "." || string(chunk) == ".\n", nil
}

// readLongLine goes on reading a line that filled the buffer.
func readLongLine(r *bufio.Reader, line []byte, max int, op string) (string, error) {
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > max {
			return "", &ProtocolError{Op: op, Msg: "response line longer than the limit"}
		}
		line = append(line, chunk...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			return "", io.ErrUnexpectedEOF
		}
		return "", err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return string(line), nil
}

// dotReader reads the body of a multi-line response (RFC 1939 section 3):
// it removes the leading dot that the server added to lines starting with a
// dot, turns CRLF line endings into LF, and stops at the terminating line
// ".". Lines of any length are streamed through the bufio.Reader's buffer.
// If the input ends before the terminating line, Read returns ErrTruncated.
type dotReader struct {
	r         *bufio.Reader
	lineStart bool   // the next byte read starts a line
	heldCR    bool   // a CR ended the previous chunk; its fate depends on the next byte
	pending   []byte // bytes of the current chunk not yet returned
	n         int64  // bytes returned or drained so far
	err       error  // sticky: io.EOF once the terminator was read, or the failure
}

func newDotReader(r *bufio.Reader) *dotReader {
	return &dotReader{r: r, lineStart: true}
}

// Read implements io.Reader. It returns as soon as it has some data and the
// next chunk would need another read from the network.
func (d *dotReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(d.pending) > 0 {
			c := copy(p[n:], d.pending)
			d.pending = d.pending[c:]
			n += c
			continue
		}
		if d.err != nil || (n > 0 && d.r.Buffered() == 0) {
			break
		}
		if d.heldCR {
			lf := d.peekLF()
			if d.err != nil {
				break
			}
			if !lf {
				// The held CR was not part of a CRLF: it is content.
				p[n] = '\r'
				n++
				d.heldCR = false
				continue
			}
		}
		d.nextChunk()
	}
	d.n += int64(n)
	if n > 0 {
		return n, nil
	}
	return 0, d.err
}

// peekLF reports whether the byte after a held CR is LF. It sets d.err when
// the input fails.
func (d *dotReader) peekLF() bool {
	b, err := d.r.Peek(1)
	if err != nil {
		d.fail(err)
		return false
	}
	return b[0] == '\n'
}

// nextChunk reads the next piece of a line into d.pending.
func (d *dotReader) nextChunk() {
	chunk, err := d.r.ReadSlice('\n')
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		d.fail(err)
		return
	}
	if d.heldCR {
		// chunk starts with the LF that completes the held CR.
		d.heldCR = false
	}
	if d.lineStart && len(chunk) > 0 && chunk[0] == '.' {
		if err == nil && (len(chunk) == 2 && chunk[1] == '\n' || len(chunk) == 3 && chunk[1] == '\r' && chunk[2] == '\n') {
			d.err = io.EOF
			return
		}
		chunk = chunk[1:]
	}
	if err == nil {
		// A complete line: normalise its ending to LF.
		d.lineStart = true
		if len(chunk) >= 2 && chunk[len(chunk)-2] == '\r' {
			chunk[len(chunk)-2] = '\n'
			chunk = chunk[:len(chunk)-1]
		}
	} else {
		// Part of a long line. A CR at its end may belong to a CRLF that
		// continues in the next chunk: hold it back.
		d.lineStart = false
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\r' {
			chunk = chunk[:len(chunk)-1]
			d.heldCR = true
		}
	}
	d.pending = chunk
}

func (d *dotReader) fail(err error) {
	if errors.Is(err, io.EOF) {
		err = ErrTruncated
	}
	d.err = err
}

// drain reads to the end of the response so that the connection can carry
// the next reply.
func (d *dotReader) drain() error {
	for {
		d.n += int64(len(d.pending))
		d.pending = nil
		if d.err != nil {
			break
		}
		if d.heldCR && !d.peekLF() && d.err == nil {
			d.n++ // the held CR was content
		}
		d.heldCR = false
		d.nextChunk()
	}
	d.pending = nil
	if d.err == io.EOF {
		return nil
	}
	return d.err
}
