package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/popfetch/popfetch/config"
)

// openPTY returns the master side and the path of the slave side of a new
// pseudo-terminal.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no pseudo-terminal: %v", err)
		}
		t.Skipf("SKIP: no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	return m, fmt.Sprintf("/dev/pts/%d", n)
}

func TestPasswordPrompt(t *testing.T) {
	acct := config.Account{Name: "work", Server: "pop.example.com", User: "me"}
	noPassword := func(context.Context) (string, error) { return "", config.ErrNoPassword }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("asks with echo off", func(t *testing.T) {
		master, slave := openPTY(t)
		calls := 0
		get := withPrompt(acct, func(ctx context.Context) (string, error) { calls++; return noPassword(ctx) }, slave, nil)
		out := make(chan string, 1)
		go func() {
			buf := make([]byte, 4096)
			var seen strings.Builder
			for !strings.Contains(seen.String(), "(account work): ") {
				n, err := master.Read(buf)
				if err != nil {
					break
				}
				seen.Write(buf[:n])
			}
			master.WriteString("s3cret pw\n")
			master.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			for {
				n, err := master.Read(buf)
				seen.Write(buf[:n])
				if err != nil {
					break
				}
			}
			out <- seen.String()
		}()
		pw, err := get(ctx)
		if err != nil || pw != "s3cret pw" {
			t.Fatalf("got %q, %v", pw, err)
		}
		screen := <-out
		if !strings.Contains(screen, "popfetch: password for me on pop.example.com (account work): ") {
			t.Fatalf("screen %q", screen)
		}
		if strings.Contains(screen, "s3cret") {
			t.Fatalf("the password was echoed: %q", screen)
		}
		// The terminal is restored.
		s, _ := os.OpenFile(slave, os.O_RDWR|unix.O_NOCTTY, 0)
		defer s.Close()
		tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
		if err != nil || tio.Lflag&unix.ECHO == 0 {
			t.Fatalf("echo not restored: %v", err)
		}
		// Asked once per run.
		if pw, _ := get(ctx); pw != "s3cret pw" || calls != 1 {
			t.Fatalf("second call: %q, %d source calls", pw, calls)
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		_, slave := openPTY(t)
		stop := make(chan struct{})
		get := withPrompt(acct, noPassword, slave, stop)
		go func() { time.Sleep(100 * time.Millisecond); close(stop) }()
		if _, err := get(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("no terminal", func(t *testing.T) {
		get := withPrompt(acct, noPassword, "/nonexistent/tty", nil)
		if _, err := get(ctx); !errors.Is(err, config.ErrNoPassword) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("not a terminal", func(t *testing.T) {
		get := withPrompt(acct, noPassword, os.DevNull, nil)
		if _, err := get(ctx); err == nil || !strings.Contains(err.Error(), "not a terminal") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a configured source is not overridden", func(t *testing.T) {
		failing := errors.New("password_command pass: exit status 1")
		get := withPrompt(acct, func(context.Context) (string, error) { return "", failing }, "/dev/null", nil)
		if _, err := get(ctx); err != failing {
			t.Fatalf("err = %v", err)
		}
	})
}
