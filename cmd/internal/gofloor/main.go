//go:build linux

// Command gofloor is the floor popbench measures a Go client against: the
// least a Go program does to move a POP3 mailbox into a Maildir durably,
// and nothing else.
//
// It logs in with USER and PASS, asks STAT, sends RETR and DELE for every
// message at once (without waiting for any reply or disk), and, reading
// the replies on one goroutine, writes each message into the Maildir with
// the system calls a durable delivery cannot do without: an unnamed file
// in new/ (O_TMPFILE), one write per 64 KiB, fsync, a link to its name,
// close; new/ is fsync'd once at the end, and only then is QUIT sent, so
// that a failure leaves the mailbox as it was (RFC 1939 deletes at QUIT
// only). No UID store, no configuration, no logging, no goroutine per
// message, no os.File: raw descriptors and one reused buffer. It is not a
// client to use (it sends DELE before the message is on disk, and keeps
// no record of what it delivered); it is what the work costs in Go.
//
// Usage: gofloor HOST:PORT USER PASS MAILDIR
//
// Exit codes: 0 mail fetched, 1 no mail (as popfetch), 2 usage, 3 error.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: gofloor HOST:PORT USER PASS MAILDIR")
		os.Exit(2)
	}
	n, err := run(os.Args[1], os.Args[2], os.Args[3], os.Args[4])
	if err != nil {
		fmt.Fprintln(os.Stderr, "gofloor:", err)
		os.Exit(3)
	}
	if n == 0 {
		os.Exit(1) // as popfetch: no mail
	}
}

// run fetches and deletes every message of the mailbox into maildir and
// returns how many there were.
func run(addr, user, pass, maildir string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Minute))
	r := bufio.NewReaderSize(conn, 64<<10)
	// reply reads a status line, at most the reader's 64 KiB.
	reply := func(what string) (string, error) {
		b, err := r.ReadSlice('\n')
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		line := string(b)
		if !strings.HasPrefix(line, "+OK") {
			return "", fmt.Errorf("%s: %.200q", what, strings.TrimSpace(line))
		}
		return line, nil
	}
	if _, err := reply("greeting"); err != nil {
		return 0, err
	}
	var stat string
	for _, cmd := range []string{"USER " + user, "PASS " + pass, "STAT"} {
		if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
			return 0, err
		}
		if stat, err = reply(strings.Fields(cmd)[0]); err != nil {
			return 0, err
		}
	}
	f := strings.Fields(stat)
	if len(f) < 2 {
		return 0, fmt.Errorf("STAT: %q", stat)
	}
	n, err := strconv.Atoi(f[1])
	if err != nil || n < 0 {
		return 0, fmt.Errorf("STAT: %.200q", stat)
	}
	sent := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(conn, 64<<10)
		var b []byte
		for i := 1; i <= n; i++ {
			b = append(b[:0], "RETR "...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, "\r\nDELE "...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, "\r\n"...)
			w.Write(b)
		}
		sent <- w.Flush()
	}()
	newDir := maildir + "/new"
	dirfd, err := unix.Open(newDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", newDir, err)
	}
	defer unix.Close(dirfd)
	pid := os.Getpid()
	buf := make([]byte, 0, 64<<10)
	var name []byte
	for i := 1; i <= n; i++ {
		if _, err := reply("RETR " + strconv.Itoa(i)); err != nil {
			return 0, err
		}
		fd, err := unix.Openat(dirfd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return 0, fmt.Errorf("O_TMPFILE: %w", err)
		}
		buf = buf[:0]
		atStart := true // of a line
		cr := false     // the last piece of a line too long for the reader ended in CR
		for {
			line, err := r.ReadSlice('\n')
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				unix.Close(fd)
				return 0, fmt.Errorf("RETR %d: %w", i, err)
			}
			start, whole := atStart, err == nil
			atStart = whole
			if start && len(line) >= 2 && line[0] == '.' {
				if bytes.Equal(line, []byte(".\r\n")) {
					break
				}
				line = line[1:] // dot-stuffed
			}
			switch {
			case whole && bytes.HasSuffix(line, []byte("\r\n")):
				line = append(line[:len(line)-2], '\n')
			case whole && cr && len(line) == 1:
				// The CR went out with the last piece: take it back.
				if len(buf) > 0 {
					buf = buf[:len(buf)-1]
				} else if _, err := unix.Seek(fd, -1, 1); err != nil {
					unix.Close(fd)
					return 0, fmt.Errorf("seek: %w", err)
				}
			}
			cr = !whole && len(line) > 0 && line[len(line)-1] == '\r'
			if len(buf)+len(line) > cap(buf) {
				if err := writeAll(fd, buf); err != nil {
					unix.Close(fd)
					return 0, err
				}
				buf = buf[:0]
			}
			buf = append(buf, line...)
		}
		if err := writeAll(fd, buf); err != nil {
			unix.Close(fd)
			return 0, err
		}
		if err := unix.Fsync(fd); err != nil {
			unix.Close(fd)
			return 0, fmt.Errorf("fsync: %w", err)
		}
		name = fmt.Appendf(name[:0], "%d.M%dP%d.gofloor", time.Now().Unix(), i, pid)
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dirfd, string(name), unix.AT_SYMLINK_FOLLOW)
		unix.Close(fd)
		if err != nil {
			return 0, fmt.Errorf("link: %w", err)
		}
		if _, err := reply("DELE " + strconv.Itoa(i)); err != nil {
			return 0, err
		}
	}
	if err := unix.Fsync(dirfd); err != nil {
		return 0, fmt.Errorf("fsync new/: %w", err)
	}
	if err := <-sent; err != nil {
		return 0, err
	}
	if _, err := conn.Write([]byte("QUIT\r\n")); err != nil {
		return 0, err
	}
	if _, err := reply("QUIT"); err != nil {
		return 0, err
	}
	return n, nil
}

// writeAll writes b to fd in full.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}
