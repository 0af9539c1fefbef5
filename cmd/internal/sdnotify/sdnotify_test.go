package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	n := New()
	if !n.Enabled() {
		t.Fatal("not enabled with NOTIFY_SOCKET set")
	}
	if err := n.Notify(Ready, Status("polling 3 accounts")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	k, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:k]); got != "READY=1\nSTATUS=polling 3 accounts" {
		t.Errorf("datagram %q", got)
	}
	if err := n.Notify("STATUS=a\nMAINPID=1"); err == nil {
		t.Error("a newline inside an assignment was sent")
	}
}

func TestNotifyAbstract(t *testing.T) {
	name := "popfetch-test-" + strconv.Itoa(os.Getpid())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "\x00" + name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", "@"+name)
	if err := New().Notify(Watchdog); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	k, err := conn.Read(buf)
	if err != nil || string(buf[:k]) != "WATCHDOG=1" {
		t.Errorf("got %q, %v", buf[:k], err)
	}
}

func TestOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	n := New()
	if n.Enabled() || n.Notify(Ready) != nil {
		t.Error("a notifier without NOTIFY_SOCKET did something")
	}
	if _, ok, err := WatchdogInterval(); ok || err != nil {
		t.Errorf("watchdog without WATCHDOG_USEC: %v %v", ok, err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		ok, err   bool
	}{
		{"30000000", "", 15 * time.Second, true, false},
		{"30000000", strconv.Itoa(os.Getpid()), 15 * time.Second, true, false},
		{"30000000", "1", 0, false, false}, // meant for another process
		{"soon", "", 0, false, true},
		{"-5", "", 0, false, true},
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		d, ok, err := WatchdogInterval()
		if d != tc.want || ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("%s/%s: %v %v %v", tc.usec, tc.pid, d, ok, err)
		}
	}
}
