// Package measure runs a program and reports its wall time and its peak
// memory.
package measure

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Result is what Run measured.
type Result struct {
	Wall     time.Duration
	PeakRSS  int64         // bytes; 0 if it could not be read
	CPU      time.Duration // user and system time of the program and its waited-for children
	ExitCode int
}

// Run starts cmd, waits for it and returns its wall time, exit code and
// peak resident set size. The peak is the program's own VmHWM, sampled
// from /proc while it runs: the rusage of a child is no good for this,
// because Go starts children with vfork and Linux counts the parent's
// memory at exec in the child's ru_maxrss. A failure to run at all is an
// error; a non-zero exit is not.
func Run(cmd *exec.Cmd) (Result, error) {
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, err
	}
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	done := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		var hwm int64
		for {
			hwm = max(hwm, vmHWM(status))
			select {
			case <-done:
				peak <- hwm
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	err := cmd.Wait()
	wall := time.Since(start)
	close(done)
	res := Result{Wall: wall, PeakRSS: <-peak}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return res, err
	}
	res.ExitCode = cmd.ProcessState.ExitCode()
	res.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return res, nil
}

// Memory returns the resident set size of process pid now and at its
// peak (VmRSS and VmHWM), in bytes; 0 where it cannot read them.
func Memory(pid int) (rss, peak int64) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	return statusField(path, "VmRSS:"), statusField(path, "VmHWM:")
}

// vmHWM reads the peak resident set size from a /proc/PID/status file, in
// bytes; 0 if it cannot.
func vmHWM(path string) int64 { return statusField(path, "VmHWM:") }

// statusField reads a field in kB from a /proc/PID/status file, in bytes.
func statusField(path, key string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb * 1024
		}
	}
	return 0
}
