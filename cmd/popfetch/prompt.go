package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/popfetch/popfetch/config"
)

// ttyPath is the controlling terminal, where a one-shot run asks for a
// password that no source has (as fetchmail does). Under cron or systemd
// there is none, and popfetch fails with the "no password" error instead.
const ttyPath = "/dev/tty"

// maxPasswordLine bounds what is read at the prompt.
const maxPasswordLine = 4096

// withPrompt wraps an account's password source: when it has no password
// (config.ErrNoPassword) and a terminal can be opened, the user is asked,
// with echo off. The answer is kept for the rest of the run. stop (the
// first SIGINT) and ctx end the question.
func withPrompt(a config.Account, resolve func(context.Context) (string, error), tty string, stop <-chan struct{}) func(context.Context) (string, error) {
	var answer string
	return func(ctx context.Context) (string, error) {
		if answer != "" {
			return answer, nil
		}
		pw, err := resolve(ctx)
		if !errors.Is(err, config.ErrNoPassword) {
			return pw, err
		}
		f, terr := os.OpenFile(tty, os.O_RDWR, 0)
		if terr != nil {
			return "", err // no terminal: the "no password" error
		}
		defer f.Close()
		pw, perr := readPassword(ctx, f, fmt.Sprintf("popfetch: password for %s on %s (account %s): ", a.User, a.Server, a.Name), stop)
		if perr != nil {
			return "", perr
		}
		if pw == "" {
			return "", errors.New("no password entered")
		}
		answer = pw
		return pw, nil
	}
}

// readPassword writes prompt to the terminal f and reads one line with
// echo off, restoring the terminal however it ends.
func readPassword(ctx context.Context, f *os.File, prompt string, stop <-chan struct{}) (string, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, ioctlReadTermios)
	if err != nil {
		return "", fmt.Errorf("%s is not a terminal: %w", f.Name(), err)
	}
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	noEcho.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, ioctlWriteTermios, &noEcho); err != nil {
		return "", err
	}
	defer func() {
		unix.IoctlSetTermios(fd, ioctlWriteTermios, old)
		f.WriteString("\n")
	}()
	if _, err := f.WriteString(prompt); err != nil {
		return "", err
	}
	type result struct {
		line string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// Ends with the process if the question is abandoned.
		r := bufio.NewReaderSize(f, 512)
		var b strings.Builder
		for b.Len() < maxPasswordLine {
			c, err := r.ReadByte()
			if err != nil {
				done <- result{err: err}
				return
			}
			if c == '\n' {
				done <- result{line: strings.TrimSuffix(b.String(), "\r")}
				return
			}
			b.WriteByte(c)
		}
		done <- result{err: errors.New("password too long")}
	}()
	select {
	case res := <-done:
		return res.line, res.err
	case <-stop:
		return "", fmt.Errorf("interrupted at the password prompt: %w", context.Canceled)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}
