// Package sdnotify speaks systemd's notification protocol (sd_notify(3)):
// readiness, status text, reloading, stopping and watchdog keep-alives,
// sent as datagrams to the socket named by $NOTIFY_SOCKET.
//
// Outside systemd (no $NOTIFY_SOCKET) every call does nothing.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// The states popfetch sends.
const (
	Ready     = "READY=1"
	Reloading = "RELOADING=1"
	Stopping  = "STOPPING=1"
	Watchdog  = "WATCHDOG=1"
)

// Notifier sends notifications to systemd.
type Notifier struct {
	addr *net.UnixAddr // nil outside systemd
}

// New returns a Notifier for $NOTIFY_SOCKET. An address that starts with
// "@" is in the abstract namespace.
func New() *Notifier {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return &Notifier{}
	}
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	return &Notifier{addr: &net.UnixAddr{Name: name, Net: "unixgram"}}
}

// Enabled reports whether systemd listens.
func (n *Notifier) Enabled() bool { return n.addr != nil }

// Notify sends the given "KEY=value" assignments in one datagram.
func (n *Notifier) Notify(states ...string) error {
	if n.addr == nil {
		return nil
	}
	for _, s := range states {
		if strings.ContainsRune(s, '\n') {
			return fmt.Errorf("sdnotify: newline in %q", s)
		}
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(states, "\n"))); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// Status returns a STATUS= assignment, the one-line state systemctl
// status shows.
func Status(text string) string {
	return "STATUS=" + strings.ReplaceAll(text, "\n", " ")
}

// WatchdogInterval returns how often to send Watchdog: half the timeout
// systemd set in $WATCHDOG_USEC, if it is meant for this process
// ($WATCHDOG_PID, if set, is ours). ok is false when there is no
// watchdog.
func WatchdogInterval() (d time.Duration, ok bool, err error) {
	usec := os.Getenv("WATCHDOG_USEC")
	if usec == "" {
		return 0, false, nil
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || n <= 0 {
		return 0, false, errors.New("sdnotify: bad WATCHDOG_USEC " + strconv.Quote(usec))
	}
	return time.Duration(n) * time.Microsecond / 2, true, nil
}
