package deliver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"net/textproto"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
)

// ExTempFail is the exit status (sysexits.h EX_TEMPFAIL) with which an MDA
// says "try again later".
const ExTempFail = 75

// DefaultMDATimeout bounds an MDA run when MDA.Timeout is zero.
const DefaultMDATimeout = 5 * time.Minute

// MDA delivers by running a program with the message on its standard input,
// the way procmail, maildrop or dovecot-lda expect.
//
// The program is run directly, never through a shell. In each argv element
// "%F" becomes the envelope sender (from Return-Path, else From; empty for
// a bounce), "%T" the recipient, and "%%" a percent sign. The values are
// neutralised first (see safeValue): every character but letters, digits
// and @ . _ + = - becomes "_", and so does a leading "-"; one longer than
// any address is replaced by an empty string.
//
// The message is first spooled to an unlinked temporary file, so that an
// incomplete message is never piped at all. Exit status 0 means delivered,
// if the program read the whole message; 75 (EX_TEMPFAIL) is a temporary
// failure, anything else, or exit status 0 after reading only part of the
// message, a permanent failure; either failure leaves the message on the
// server. A run longer than
// Timeout is killed together with its children.
type MDA struct {
	Argv     []string
	Timeout  time.Duration
	SpoolDir string // where to spool; "" means os.TempDir()

	mu sync.Mutex // one MDA run at a time, in the order published
}

// Stage implements Deliverer: it spools the message to an unlinked file
// and reads its envelope sender.
func (m *MDA) Stage(ctx context.Context, r io.Reader, env Envelope) (Staged, error) {
	if len(m.Argv) == 0 {
		return nil, &Error{Target: "mda", Err: errors.New("empty command")}
	}
	target := "mda " + m.Argv[0]
	f, err := spool(m.SpoolDir, target, r)
	if err != nil {
		return nil, err
	}
	st := &stagedSpool{m: m, target: target, spool: f}
	var sender string
	if usesSender(m.Argv) {
		if sender, err = spoolSender(f); err != nil {
			st.Abort()
			return nil, &Error{Target: target, Temporary: true, Err: err}
		}
	}
	st.argv = Expand(m.Argv, sender, env.Recipient)
	return st, nil
}

// Flush implements Deliverer. An MDA's exit status is its promise that
// the message is safe: there is nothing more to flush.
func (m *MDA) Flush() error { return nil }

// Close implements Deliverer; an MDA holds nothing between messages.
func (m *MDA) Close() error { return nil }

// stagedSpool is a message spooled for an MDA.
type stagedSpool struct {
	m      *MDA
	target string
	argv   []string
	spool  *os.File
}

// Publish runs the MDA with the message on its standard input.
func (s *stagedSpool) Publish(ctx context.Context) error {
	defer s.Abort()
	if _, err := s.spool.Seek(0, io.SeekStart); err != nil {
		return &Error{Target: s.target, Temporary: true, Err: err}
	}
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if err := s.m.run(ctx, s.target, s.argv, s.spool); err != nil {
		return err
	}
	// The MDA shares the spool file's offset: short of the end, it
	// stopped reading, and its exit status 0 cannot vouch for the whole
	// message (fetchmail sees the same as a broken pipe).
	read, err := s.spool.Seek(0, io.SeekCurrent)
	if err != nil {
		return &Error{Target: s.target, Temporary: true, Err: err}
	}
	fi, err := s.spool.Stat()
	if err != nil {
		return &Error{Target: s.target, Temporary: true, Err: err}
	}
	if read < fi.Size() {
		return &Error{Target: s.target, Err: fmt.Errorf("exit status 0, but it read only %d of the message's %d octets", read, fi.Size())}
	}
	return nil
}

// Abort closes (and so removes) the spool file.
func (s *stagedSpool) Abort() {
	if s.spool != nil {
		s.spool.Close()
		s.spool = nil
	}
}

func (m *MDA) run(ctx context.Context, target string, argv []string, stdin io.Reader) error {
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = DefaultMDATimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = stdin
	out := &tailBuffer{max: 2048}
	cmd.Stdout = out
	cmd.Stderr = out
	// Its own process group, so that a timeout kills its children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	detail := strings.TrimSpace(out.String())
	if detail != "" {
		detail = ": " + detail
	}
	if ctx.Err() != nil {
		return &Error{Target: target, Temporary: true, Err: fmt.Errorf("killed after %v%s", timeout, detail)}
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code := exit.ExitCode()
		if code == ExTempFail {
			return &Error{Target: target, Temporary: true, Err: fmt.Errorf("exit status %d (EX_TEMPFAIL)%s", code, detail)}
		}
		if code < 0 {
			return &Error{Target: target, Err: fmt.Errorf("%v%s", exit, detail)}
		}
		return &Error{Target: target, Err: fmt.Errorf("exit status %d%s", code, detail)}
	}
	// Could not start it at all (not found, not executable).
	return &Error{Target: target, Err: err}
}

func usesSender(argv []string) bool {
	for _, a := range argv {
		if strings.Contains(strings.ReplaceAll(a, "%%", ""), "%F") {
			return true
		}
	}
	return false
}

// Expand substitutes %F (sender), %T (recipient) and %% in each element of
// argv. The values are neutralised first (see safeValue): a sender's
// address is chosen by whoever sent the message.
func Expand(argv []string, sender, recipient string) []string {
	sender, recipient = safeValue(sender), safeValue(recipient)
	out := make([]string, len(argv))
	for i, a := range argv {
		var b strings.Builder
		for j := 0; j < len(a); j++ {
			if a[j] == '%' && j+1 < len(a) {
				switch a[j+1] {
				case 'F':
					b.WriteString(sender)
					j++
					continue
				case 'T':
					b.WriteString(recipient)
					j++
					continue
				case '%':
					b.WriteByte('%')
					j++
					continue
				}
			}
			b.WriteByte(a[j])
		}
		out[i] = b.String()
	}
	return out
}

// maxAddress is the longest address put in an MDA's command line.
const maxAddress = 256

// safeValue neutralises an address for an MDA's command line, wherever
// it lands: an argument of its own, part of one ("-f<%F>"), or a script
// for /bin/sh -c. Letters, digits (any script's) and @ . _ + = - stay;
// every other character (white space, quotes, backslashes, shell syntax,
// controls, /) becomes "_", and so does a leading "-", which a program
// would take for an option. This is what fetchmail does to %F and %T.
func safeValue(v string) string {
	if len(v) > maxAddress {
		// Longer than any address (RFC 5321: a path of 256 octets):
		// made up to fill the command line, which fails with E2BIG.
		return ""
	}
	out := []rune(v)
	for i, r := range out {
		ok := unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("@._+=-", r)
		if !ok || (i == 0 && r == '-') {
			out[i] = '_'
		}
	}
	return string(out)
}

// maxHeaderScan bounds how much of a message is read to find its sender.
const maxHeaderScan = 256 << 10

// envelopeSender returns the address of the Return-Path field, or else of
// the From field, of the message in r; "" if there is none or it is <>.
func envelopeSender(r io.Reader) string {
	// ReadMIMEHeader returns the fields it could read even on error.
	h, _ := textproto.NewReader(bufio.NewReader(io.LimitReader(r, maxHeaderScan))).ReadMIMEHeader()
	if rp, ok := h["Return-Path"]; ok && len(rp) > 0 {
		v := strings.TrimSpace(rp[0])
		if strings.Trim(v, "<> ") == "" {
			return "" // a bounce: the null sender
		}
		if a, err := mail.ParseAddress(v); err == nil {
			return a.Address
		}
		return strings.Trim(v, "<> ")
	}
	if list, err := mail.ParseAddressList(h.Get("From")); err == nil && len(list) > 0 {
		return list[0].Address
	}
	return ""
}

// errReader remembers the error of the reader it wraps, so that a failed
// source can be told apart from a failed destination.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > t.max {
		p = p[len(p)-t.max:]
	}
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return n, nil
}

func (t *tailBuffer) String() string { return t.buf.String() }
