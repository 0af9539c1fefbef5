//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package main

import "golang.org/x/sys/unix"

// ioctlReadTermios is the ioctl that reads a terminal's settings: whether
// it succeeds tells a terminal from a file or a pipe.
const ioctlReadTermios = unix.TIOCGETA

// ioctlWriteTermios is the ioctl that sets them.
const ioctlWriteTermios = unix.TIOCSETA
