package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/uidstore"
)

// Kind classifies why a poll failed, for exit codes and retry decisions.
type Kind int

// The kinds of failure, in the order of fetchmail's exit codes.
const (
	KindInternal    Kind = iota // a bug, or the UID store failed
	KindNetwork                 // could not connect, timed out, connection lost (fetchmail: socket error)
	KindTLS                     // TLS handshake or certificate verification failed
	KindAuth                    // the server refused the credentials
	KindProtocol                // the server broke the protocol, or lacks a required feature (STLS)
	KindConfig                  // the account cannot work as configured (e.g. keep without UIDL, no password)
	KindServer                  // the server reported an error
	KindLocked                  // the server says the mailbox is in use ([IN-USE])
	KindStoreLocked             // another popfetch holds the UID store
	KindDelivery                // a message could not be delivered
	KindCanceled                // the poll was interrupted
)

var kindNames = map[Kind]string{
	KindInternal: "internal error", KindNetwork: "network error", KindTLS: "TLS error",
	KindAuth: "authentication failed", KindProtocol: "protocol error", KindConfig: "configuration error",
	KindServer: "server error", KindLocked: "mailbox locked", KindStoreLocked: "state locked",
	KindDelivery: "delivery failed", KindCanceled: "interrupted",
}

func (k Kind) String() string { return kindNames[k] }

// Error is a failed poll of one account.
type Error struct {
	Account string
	Kind    Kind
	Err     error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s: %v", e.Account, e.Kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Summary says what went wrong without the account's name: the kind and
// the error, or only the error when it says itself what happened (a
// timeout names the server, what was being done and the timeout).
func (e *Error) Summary() string {
	var te *pop3.TimeoutError
	if errors.As(e.Err, &te) {
		return e.Err.Error()
	}
	return e.Kind.String() + ": " + e.Err.Error()
}

// Temporary reports whether polling again later may succeed without the
// user changing anything.
func (e *Error) Temporary() bool {
	switch e.Kind {
	case KindNetwork, KindLocked, KindStoreLocked, KindCanceled:
		return true
	case KindServer, KindDelivery:
		var perr *pop3.Error
		var derr *deliver.Error
		return (errors.As(e.Err, &perr) && perr.Temporary()) || (errors.As(e.Err, &derr) && derr.Temporary)
	}
	return false
}

// classify turns an error of the session into an *Error, judging it by
// its type: a -ERR carries the command it answered (pop3.Error.Command),
// so a refused login is told from other refusals by that.
func classify(account string, err error) *Error {
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	k := KindInternal
	var (
		perr    *pop3.Error
		proto   *pop3.ProtocolError
		tlsErr  *pop3.TLSError
		derr    *deliver.Error
		saslErr *pop3.SASLError
	)
	switch {
	case errors.Is(err, context.Canceled):
		k = KindCanceled
	case errors.As(err, &tlsErr) && !isNetwork(tlsErr.Err), isTLSAlert(err):
		// A certificate or handshake failure, ours or the server's (an
		// alert; with TLS 1.3 a refused client certificate is reported
		// at the first read after the handshake); a handshake that timed
		// out or lost its connection is a network failure.
		k = KindTLS
	case errors.As(err, &perr):
		k = KindServer
		switch {
		case perr.Command == "STLS":
			// TLS was required and the server refused it: a feature
			// missing, as when it does not offer STLS at all.
			k = KindProtocol
		case perr.HasCode(pop3.CodeInUse) || (isAuthStep(perr.Command) && perr.Code == "" && mentionsLock(perr.Text)):
			k = KindLocked
		case isAuthStep(perr.Command) && (perr.Code == "" || perr.HasCode(pop3.CodeAuth)):
			k = KindAuth
		}
	case errors.As(err, &saslErr):
		// The mechanism ended the exchange: a refused token, or a
		// server that could not prove it knows the password.
		k = KindAuth
	case errors.As(err, &proto), errors.Is(err, pop3.ErrNoSTLS), errors.Is(err, pop3.ErrNoAPOP):
		k = KindProtocol
	case errors.As(err, &derr):
		k = KindDelivery
	case errors.Is(err, uidstore.ErrLocked):
		k = KindStoreLocked
	case isNetwork(err):
		k = KindNetwork
	}
	return &Error{Account: account, Kind: k, Err: err}
}

// isNetwork reports errors of the connection itself: timeouts, refused or
// reset connections, a peer that hung up, a message cut short.
func isNetwork(err error) bool {
	var (
		netErr net.Error
		opErr  *net.OpError
	)
	return errors.Is(err, pop3.ErrTruncated) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &netErr) || errors.As(err, &opErr) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, pop3.ErrClosed)
}

// isTLSAlert reports an alert the server sent during the handshake
// (crypto/tls reports it as a net.OpError "remote error"): it refused
// our TLS version or our certificate, which waiting will not cure.
func isTLSAlert(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "remote error"
}

func isAuthStep(step string) bool {
	return step == "USER" || step == "PASS" || step == "APOP" || step == "AUTH"
}

// mentionsLock recognises servers without RFC 2449 response codes that
// say in words that the mailbox is locked ("Unable to lock maildrop",
// "mailbox in use"): a lock, use or busy word about the mailbox, and
// nothing about the account or its credentials. "Account locked after 3
// failures" and "blocked: too many attempts" are refused logins: taking
// them for a busy mailbox would retry soon, and lock the account for good.
func mentionsLock(text string) bool {
	t := strings.ToLower(text)
	about := func(words ...string) bool {
		for _, w := range words {
			if strings.Contains(t, w) {
				return true
			}
		}
		return false
	}
	return about("lock", "in use", "busy") &&
		about("mailbox", "maildrop", "mail drop", "mail box", "inbox", "spool", "mail file", "folder") &&
		!about("account", "password", "credential", "login", "logon", "authenticat", "attempt", "failure", "blocked", "locked out")
}
