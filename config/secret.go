package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// PasswordCommandTimeout bounds a password_command run.
const PasswordCommandTimeout = 2 * time.Minute

// Secret is where an account's password comes from: the config file
// itself, a file, or a command's output. Its String method never shows the
// secret.
type Secret struct {
	value   string
	file    string
	command []string
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
	}
	return "none"
}

// IsSet reports whether there is a source.
func (s Secret) IsSet() bool { return s.value != "" || s.file != "" || len(s.command) > 0 }

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
		fi, err := os.Stat(s.file)
		if err != nil {
			return "", fmt.Errorf("password_file: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return "", &PermissionError{Path: s.file, Mode: fi.Mode()}
		}
		data, err := os.ReadFile(s.file)
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
	default:
		return "", errors.New("no password configured")
	}
	line, _, _ := strings.Cut(out, "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s: the first line is empty", s)
	}
	return line, nil
}
