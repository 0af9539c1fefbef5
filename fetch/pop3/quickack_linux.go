package pop3

import (
	"net"
	"syscall"
)

// ackNow has the kernel acknowledge at once what conn received, instead
// of delaying the ACK (up to 40 ms on Linux) in the hope of sending it
// with the next command. A client that pipelined commands and waits for
// the next reply has nothing to send: a server that writes that reply
// in a second small segment with Nagle's algorithm on holds it until the
// first is acknowledged. Dovecot does so after a pipelined USER and
// PASS: pop3-login answers USER, hands the connection to a pop3 process,
// which answers PASS; that cost every login 30 ms on loopback. The
// TCP_QUICKACK option sends an ACK that is due now; it is not a lasting
// setting, so it is set each time. A failure changes nothing but speed.
func ackNow(conn net.Conn) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
