package main

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// peerAllowed reports whether the process at the other end of conn, a
// Unix socket, runs as this user or as root. The daemon asks it of its
// clients: the socket's mode (0600) already keeps others out; this also
// covers the moment between its creation and the chmod. A client asks it
// of the daemon (the kernel keeps the credentials of who listened): a
// socket another user planted in a state directory open to others is
// not answered to.
func peerAllowed(conn net.Conn) bool {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false
	}
	return int(cred.Uid) == os.Geteuid() || cred.Uid == 0
}
