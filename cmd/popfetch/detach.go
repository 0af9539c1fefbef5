package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/popfetch/popfetch/fetch/termsafe"
	"github.com/popfetch/popfetch/uidstore"
)

// detachEnv marks the daemon process "popfetch -d" starts: it runs in the
// background and reports its start on descriptor 3.
const detachEnv = "POPFETCH_DETACHED"

// startWait bounds the wait for a detached daemon to say it started.
const startWait = time.Minute

// underSystemd reports whether systemd (or another manager that sets
// these) runs popfetch: then it never forks, the manager watches it.
func underSystemd() bool {
	return os.Getenv("INVOCATION_ID") != "" || os.Getenv("NOTIFY_SOCKET") != ""
}

// detachedChild returns, in the process "popfetch -d" started, the pipe
// on which it reports its start; nil elsewhere. The variable is removed,
// so that the programs the daemon runs do not see it.
func detachedChild() *os.File {
	if os.Getenv(detachEnv) != "1" {
		return nil
	}
	os.Unsetenv(detachEnv)
	var st syscall.Stat_t
	if err := syscall.Fstat(3, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return nil // not our pipe: someone set the variable by hand
	}
	syscall.CloseOnExec(3)
	return os.NewFile(3, "start report")
}

// reportStarted tells the process that started this detached daemon that
// it runs; elsewhere it does nothing.
func (p *proc) reportStarted() {
	if p.ready == nil {
		return
	}
	fmt.Fprintf(p.ready, "ok %d\n", os.Getpid())
	p.ready.Close()
	p.ready = nil
}

// reportFailed tells the process that started this detached daemon why it
// did not start.
func (p *proc) reportFailed(code int, msg string) {
	if p.ready == nil {
		return
	}
	// Quoted: the message may have several lines (every problem of a
	// configuration file), and the report is one.
	fmt.Fprintf(p.ready, "fail %d %s\n", code, strconv.Quote(msg))
	p.ready.Close()
	p.ready = nil
}

// detachedChild reports whether this process is a daemon "popfetch -d"
// started in the background.
func (p *proc) detachedChild() bool { return p.child }

// detach starts this command line again as a daemon in the background, in
// a session of its own, and returns once it has started, or with why it
// did not: "popfetch -d 300" as fetchmail's. Its log goes to --logfile,
// syslog, or STATE/daemon.log.
func detach(c *cli.Context, p *proc) error {
	o := readOptions(c)
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("starting the daemon: %w", err)
	}
	logTo := o.logFile
	switch {
	case o.syslog:
		sw, err := newSyslogWriter() // fails here, not silently in the daemon
		if err != nil {
			return err
		}
		sw.Close()
		logTo = os.DevNull
	case logTo == "":
		// Not daemon.log through a link another user put there.
		if err := uidstore.CheckDir(storePath(o.stateDir)); err != nil {
			return err
		}
		if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
		logTo = filepath.Join(o.stateDir, "daemon.log")
	}
	var out *os.File
	if logTo == os.DevNull {
		out, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	} else {
		out, err = openLogFile(logTo)
	}
	if err != nil {
		return err
	}
	defer out.Close()
	in, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer in.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()

	cmd := exec.Command(exe, p.args[1:]...)
	cmd.Env = append(os.Environ(), detachEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, out, out
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("starting the daemon: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()

	r.SetReadDeadline(time.Now().Add(startWait))
	line, rerr := bufio.NewReader(io.LimitReader(r, 4<<10)).ReadString('\n')
	word, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
	switch {
	case word == "ok":
		if !o.quiet {
			where := "to " + logTo
			if o.syslog {
				where = "to syslog"
			}
			fmt.Fprintf(c.App.ErrWriter, "popfetch: daemon started, pid %d, logging %s\n", cmd.Process.Pid, where)
		}
		return nil
	case word == "fail":
		codeText, msg, _ := strings.Cut(rest, " ")
		code, err := strconv.Atoi(codeText)
		if err != nil || code <= 0 || code > 255 {
			code = exitInternal
		}
		if m, err := strconv.Unquote(msg); err == nil {
			msg = m
		}
		<-exited
		fmt.Fprintf(c.App.ErrWriter, "popfetch: %s\n", termsafe.Lines(msg))
		return exitStatus(code)
	case errors.Is(rerr, os.ErrDeadlineExceeded):
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("the daemon did not start within %v; see %s", startWait, logTo)
	}
	<-exited
	return fmt.Errorf("the daemon exited (%v) before it started; see %s", cmd.ProcessState, logTo)
}
