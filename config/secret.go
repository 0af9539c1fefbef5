package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// PasswordCommandTimeout bounds a password_command run.
const PasswordCommandTimeout = 2 * time.Minute

// ErrNoPassword is returned by Secret.Resolve when no source has a
// password: none is configured and ~/.netrc has no entry. A one-shot run
// on a terminal may then ask for it.
var ErrNoPassword = errors.New("no password: set password, password_command, password_file or password_env, or add the server to ~/.netrc")

// Secret is where an account's password comes from: the config file
// itself, a file, a command's output, an environment variable, or, when
// none is configured, ~/.netrc. Its String method never shows the secret.
type Secret struct {
	value   string
	file    string
	command []string
	env     string
	// With no source configured: the netrc entry to look up.
	machine, login string
	netrc          string // the netrc file; "" means $NETRC or ~/.netrc
}

// String describes the source without revealing the secret.
func (s Secret) String() string {
	switch {
	case s.value != "":
		return "password (in the config file)"
	case s.file != "":
		return "password_file " + s.file
	case len(s.command) > 0:
		return "password_command " + s.command[0]
	case s.env != "":
		return "password_env " + s.env
	}
	return "~/.netrc"
}

// IsSet reports whether a source is configured (else ~/.netrc is looked
// up).
func (s Secret) IsSet() bool {
	return s.value != "" || s.file != "" || len(s.command) > 0 || s.env != ""
}

// Resolve returns the password. A password_file is read and its first line
// used; it is refused if group or others can read it. A password_command is
// run without a shell (its standard error and input are the terminal's, so
// that a pinentry can ask) and the first line of its output is used.
func (s Secret) Resolve(ctx context.Context) (string, error) {
	var out string
	switch {
	case s.value != "":
		return s.value, nil
	case s.file != "":
		// Opened once: the permissions checked are those of the file
		// read, whatever is renamed into its place meanwhile. Without
		// blocking: a FIFO would otherwise hold the open, and popfetch,
		// until a writer came.
		f, err := os.OpenFile(s.file, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return "", fmt.Errorf("password_file: %w", err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return "", fmt.Errorf("password_file: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("password_file: %s is not a regular file", s.file)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return "", &PermissionError{Path: s.file, Mode: fi.Mode()}
		}
		data, err := io.ReadAll(io.LimitReader(f, 64<<10))
		if err != nil {
			return "", fmt.Errorf("password_file: %w", err)
		}
		out = string(data)
	case len(s.command) > 0:
		ctx, cancel := context.WithTimeout(ctx, PasswordCommandTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, s.command[0], s.command[1:]...)
		cmd.Stdin = os.Stdin
		cmd.Stderr = os.Stderr
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		cmd.WaitDelay = time.Second
		if err := cmd.Run(); err != nil {
			// Never include the output: it may hold the secret.
			return "", fmt.Errorf("password_command %s: %w", s.command[0], err)
		}
		out = stdout.String()
	case s.env != "":
		v, ok := os.LookupEnv(s.env)
		if !ok || v == "" {
			return "", fmt.Errorf("password_env: $%s is not set", s.env)
		}
		return v, nil
	default:
		path := s.netrc
		if path == "" {
			path = netrcDefaultPath()
		}
		if path == "" || s.machine == "" {
			return "", ErrNoPassword
		}
		pw, ok, err := netrcPassword(path, s.machine, s.login)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", ErrNoPassword
		}
		return pw, nil
	}
	line, _, _ := strings.Cut(out, "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s: the first line is empty", s)
	}
	return line, nil
}
