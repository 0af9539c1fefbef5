//go:build linux

// Command gofloor is the floor popbench measures a Go client against: the
// least a Go program does to move a POP3 mailbox into a Maildir durably,
// and nothing else.
//
// It logs in with USER and PASS, asks STAT, sends RETR and DELE for every
// message and QUIT at once (without waiting for any reply or disk), and,
// reading the replies on one goroutine, writes each message into the
// Maildir with the system calls a durable delivery cannot do without: an
// unnamed file in new/ (O_TMPFILE), one write per 64 KiB, fsync, a link
// to its name, close; new/ is fsync'd once at the end. No UID store, no
// configuration, no logging, no goroutine per message, no os.File: raw
// descriptors and one reused buffer. It is not a safe client (it deletes
// before the messages are on disk); it is what the work costs in Go.
//
// Usage: gofloor HOST:PORT USER PASS MAILDIR
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
		os.Exit(1)
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
	reply := func(what string) (string, error) {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		if !strings.HasPrefix(line, "+OK") {
			return "", fmt.Errorf("%s: %s", what, strings.TrimSpace(line))
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
	if err != nil {
		return 0, fmt.Errorf("STAT: %w", err)
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
		w.WriteString("QUIT\r\n")
		sent <- w.Flush()
	}()
	newDir := maildir + "/new"
	dirfd, err := unix.Open(newDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", newDir, err)
	}
	defer unix.Close(dirfd)
	host, _ := os.Hostname()
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
		for {
			line, err := r.ReadSlice('\n')
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				unix.Close(fd)
				return 0, fmt.Errorf("RETR %d: %w", i, err)
			}
			start := atStart
			atStart = err == nil
			if start && len(line) >= 2 && line[0] == '.' {
				if bytes.Equal(line, []byte(".\r\n")) {
					break
				}
				line = line[1:] // dot-stuffed
			}
			if err == nil && bytes.HasSuffix(line, []byte("\r\n")) {
				line = append(line[:len(line)-2], '\n')
			}
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
		name = fmt.Appendf(name[:0], "%d.M%dP%d.%s", time.Now().Unix(), i, pid, host)
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
	if _, err := reply("QUIT"); err != nil {
		return 0, err
	}
	return n, <-sent
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
