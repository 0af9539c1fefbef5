package pop3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Response codes defined by RFC 2449 and RFC 3206. A server sends them in
// square brackets at the start of the text of an -ERR reply.
const (
	CodeInUse      = "IN-USE"      // the mailbox is locked by another session
	CodeLoginDelay = "LOGIN-DELAY" // logged in too recently; try later
	CodeSysTemp    = "SYS/TEMP"    // a temporary system problem
	CodeSysPerm    = "SYS/PERM"    // a permanent system problem
	CodeAuth       = "AUTH"        // the credentials were wrong
)

// Error is a -ERR reply from the server. It says which command was refused
// and carries the response code, if the server sent one.
type Error struct {
	Command string // the command verb that was refused, e.g. "PASS"
	Code    string // the response code without brackets, e.g. "IN-USE"; "" if none
	Text    string // the rest of the reply line
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("pop3: ")
	if e.Command != "" {
		b.WriteString(e.Command)
		b.WriteString(": ")
	}
	b.WriteString("-ERR")
	if e.Code != "" {
		b.WriteString(" [")
		b.WriteString(e.Code)
		b.WriteString("]")
	}
	if e.Text != "" {
		b.WriteString(" ")
		b.WriteString(e.Text)
	}
	return b.String()
}

// Temporary reports whether the condition is expected to clear by itself:
// the mailbox is in use, the login came too soon, or the server has a
// temporary problem (RFC 3206 SYS/TEMP).
func (e *Error) Temporary() bool {
	return e.HasCode(CodeInUse) || e.HasCode(CodeLoginDelay) || e.HasCode(CodeSysTemp)
}

// HasCode reports whether the reply carries code, or a code below it in the
// hierarchy (RFC 2449 section 8: "SYS/TEMP" matches "SYS").
func (e *Error) HasCode(code string) bool {
	c := strings.ToUpper(e.Code)
	code = strings.ToUpper(code)
	return c == code || strings.HasPrefix(c, code+"/")
}

// ProtocolError reports a server that did not follow the protocol: a reply
// that is neither +OK nor -ERR, an over-long line, a malformed listing.
// The connection cannot be trusted afterwards.
type ProtocolError struct {
	Op  string // what the client was doing
	Msg string // what went wrong
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("pop3: protocol error during %s: %s", e.Op, e.Msg)
}

// ErrTruncated is returned by a message reader when the connection ended
// before the line that terminates the message. The message is incomplete and
// must not be delivered.
var ErrTruncated = errors.New("pop3: message cut short before its terminating line")

// ErrBadArgument is returned, before anything is sent, for a command argument
// that contains CR, LF or NUL, which would let it smuggle in another command.
var ErrBadArgument = errors.New("pop3: argument contains CR, LF or NUL")

// ErrNoSTLS is returned by StartTLS when the server does not advertise STLS.
var ErrNoSTLS = errors.New("pop3: server does not offer STLS")

// ErrClosed is returned for a command on a client whose connection has been
// closed or broken by an earlier network or protocol error.
var ErrClosed = errors.New("pop3: connection closed")

// TimeoutError is a wait for the server that ran out of time: the server,
// what the client was doing and the timeout that applied. It is a
// net.Error whose Timeout is true.
type TimeoutError struct {
	Addr  string        // the server's host:port, as dialled
	Doing string        // e.g. "reading the reply to UIDL", "the TLS handshake"
	After time.Duration // the timeout that ran out; 0 if it was a deadline of the caller's context
	Err   error         // the error of the read, write or handshake
}

func (e *TimeoutError) Error() string {
	var b strings.Builder
	b.WriteString("timed out")
	if e.After > 0 {
		fmt.Fprintf(&b, " after %v", e.After)
	}
	fmt.Fprintf(&b, " waiting for %s (%s)", e.Addr, e.Doing)
	var slow *SlowError
	if errors.As(e.Err, &slow) && slow.What == "a message" {
		fmt.Fprintf(&b, ": only %d octets came in %v, under the minimum of %d for each timeout", slow.Got, slow.In.Round(time.Millisecond), MinBodyRate)
	}
	return b.String()
}

func (e *TimeoutError) Unwrap() error { return e.Err }

// Timeout implements net.Error.
func (e *TimeoutError) Timeout() bool { return true }

// Temporary implements net.Error.
func (e *TimeoutError) Temporary() bool { return true }

// isTimeout reports whether err is a read, write or dial that timed out,
// or a context whose deadline passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// doing describes, for a timeout's message, the wait for the reply to the
// command verb arg. Only arguments that are message numbers, and a SASL
// mechanism's name, are shown: others may be secret (PASS, APOP).
func doing(verb, arg string) string {
	switch verb {
	case "greeting":
		return "reading the greeting"
	case "RETR", "TOP", "DELE", "LIST", "UIDL":
		if arg != "" {
			verb += " " + arg
		}
	case "AUTH":
		if mech, _, _ := strings.Cut(arg, " "); mech != "" {
			verb += " " + mech
		}
	}
	return "reading the reply to " + verb
}
