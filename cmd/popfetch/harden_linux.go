package main

import "golang.org/x/sys/unix"

// harden keeps secrets out of core files: no core file at all (a limit
// of zero, which the children, an MDA or a password_command, inherit
// too), and this process not dumpable, which also keeps other processes
// of the same user from reading its memory through ptrace or /proc.
func harden() error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return err
	}
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}
