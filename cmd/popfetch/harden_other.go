//go:build unix && !linux

package main

import "golang.org/x/sys/unix"

// harden keeps secrets out of core files: no core file at all (a limit
// of zero, which the children inherit too). Linux's PR_SET_DUMPABLE has
// no portable counterpart; the BSDs and macOS do not dump set-uid
// processes, and popfetch is not one.
func harden() error {
	return unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
}
