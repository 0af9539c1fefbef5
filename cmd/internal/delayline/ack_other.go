//go:build !linux

package delayline

import "net"

// ackNow does nothing here: TCP_QUICKACK is Linux's.
func ackNow(net.Conn) {}

// delayACKs does nothing here (see ack_linux.go).
func delayACKs(net.Conn) {}
