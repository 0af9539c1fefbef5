package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/popfetch/popfetch/uidstore"
)

// daemonLock keeps a second daemon off a state directory: an exclusive
// flock(2) on STATE/daemon.pid, held for the daemon's life, with the
// daemon's PID in the file. The kernel drops the lock when the process
// dies, however it dies, so a stale file never blocks a new daemon.
type daemonLock struct {
	f *os.File
}

// daemonRunningError says another daemon holds the state directory.
type daemonRunningError struct {
	stateDir string
	pid      int // 0 if unknown
}

func (e *daemonRunningError) Error() string {
	who := "another popfetch daemon"
	if e.pid > 0 {
		who += fmt.Sprintf(" (pid %d)", e.pid)
	}
	return fmt.Sprintf("%s is already running with state directory %s; stop it first (popfetch --quit; popfetch --quit -d INTERVAL replaces it), or give this one another --state-dir",
		who, e.stateDir)
}

func lockPath(stateDir string) string { return filepath.Join(stateDir, "daemon.pid") }

// lockDaemon takes the state directory for this daemon, creating the
// directory if need be.
func lockDaemon(stateDir string) (*daemonLock, error) {
	// Before daemon.pid is opened (and truncated) through whatever
	// another user may have put in its place.
	if err := uidstore.CheckDir(storePath(stateDir)); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	f, err := os.OpenFile(lockPath(stateDir), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid, _ := readPID(stateDir)
			return nil, &daemonRunningError{stateDir: stateDir, pid: pid}
		}
		return nil, fmt.Errorf("locking %s: %w", lockPath(stateDir), err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &daemonLock{f: f}, nil
}

// Close empties the PID file and releases the lock. The file stays: a
// removed file could be locked by one daemon while the next creates
// another.
func (l *daemonLock) Close() error {
	l.f.Truncate(0)
	return l.f.Close()
}

// daemonRunning reports whether a daemon runs with stateDir, and its PID
// (0 if it has not written it yet).
func daemonRunning(stateDir string) (pid int, running bool) {
	f, err := os.Open(lockPath(stateDir))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	if !ownFile(f) {
		// Planted by another user in a state directory open to
		// others: its lock and its PID are not a daemon of ours, and
		// --quit would signal whatever process it names.
		return 0, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		return 0, false // nobody holds it
	}
	pid, _ = readFilePID(f)
	return pid, true
}

// ownFile reports whether the open file f belongs to this user or to
// root, as a daemon of this user (or one root ran) leaves it.
func ownFile(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && (int(st.Uid) == os.Geteuid() || st.Uid == 0)
}

// readFilePID reads the PID in the open lock file f, not in whatever
// the path names by now.
func readFilePID(f *os.File) (int, error) {
	data, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

func readPID(stateDir string) (int, error) {
	data, err := os.ReadFile(lockPath(stateDir))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}
