// Package testhost holds what the private test servers (cmd/internal/
// dovecot, cmd/internal/mailutils) share about this machine: free
// loopback ports and the unprivileged user that owns their mail.
package testhost

import (
	"errors"
	"fmt"
	"net"
	"os/user"
	"strconv"
)

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago: each is held until all are chosen, so no two are the same.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// MailUser returns the uid and gid of "nobody", which owns the test
// servers' mail.
func MailUser() (uid, gid int, err error) {
	u, err := user.Lookup("nobody")
	if err != nil {
		return 0, 0, fmt.Errorf("mail user: %w", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// ErrPortTaken is a start that failed because another process took one of
// the ports FreePorts chose before the server could bind it.
var ErrPortTaken = errors.New("a listener's port was taken")

// Start calls start until it succeeds, fails otherwise than with
// ErrPortTaken, or has tried three times (each try chooses its ports
// anew).
func Start[T any](start func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		s, err := start()
		if err == nil || attempt == 3 || !errors.Is(err, ErrPortTaken) {
			return s, err
		}
	}
}
