package delayline

import (
	"net"
	"syscall"
)

// ackNow has the kernel send at once an ACK that is due on conn
// (TCP_QUICKACK 1), and then delay the ones to come again (TCP_QUICKACK
// 0: left in quick-ACK mode, the kernel would acknowledge later data on
// arrival, sooner than a distant client's ACK could come).
func ackNow(conn net.Conn) { setQuickAck(conn, 1, 0) }

// delayACKs has the kernel delay its ACKs on conn (TCP_QUICKACK 0), as
// after ackNow: a new connection starts in quick-ACK mode.
func delayACKs(conn net.Conn) { setQuickAck(conn, 0) }

// setQuickAck sets TCP_QUICKACK on conn to each of vals in turn. A
// failure (the connection closed meanwhile) changes nothing but timing.
func setQuickAck(conn net.Conn, vals ...int) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		for _, v := range vals {
			syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, v)
		}
	})
}
