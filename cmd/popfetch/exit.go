package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/popfetch/popfetch/config"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/oauth2token"
	"github.com/popfetch/popfetch/uidstore"
)

// Exit codes, the same as fetchmail's so that existing cron scripts keep
// working.
const (
	exitMail          = 0   // mail was delivered
	exitNoMail        = 1   // no new mail
	exitSocket        = 2   // could not connect, timed out, connection lost, TLS failed
	exitAuth          = 3   // the server refused the credentials
	exitProtocol      = 4   // the server broke the protocol or lacks a required feature
	exitConfig        = 5   // usage or configuration error
	exitPermissions   = 6   // the config file (or a password file) is readable by others; the state file is not accessible
	exitServer        = 7   // the server reported an error
	exitStateLocked   = 8   // another popfetch holds the state directory
	exitMailboxLocked = 9   // the server says the mailbox is in use
	exitDelivery      = 10  // a message could not be delivered
	exitFetchLimit    = 13  // fetch_limit was reached; more mail is waiting
	exitInternal      = 23  // a bug, or the UID store failed or is damaged
	exitInterrupted   = 130 // stopped by SIGINT or SIGTERM (128 + SIGINT)
)

// exitCodeDoc is one exit code and what it means, for --help and the
// manual page's EXIT STATUS.
type exitCodeDoc struct {
	code    int
	meaning string
}

// exitCodeTable is every exit code popfetch uses, in order: the one list
// that --help and the manual page are written from.
func exitCodeTable() []exitCodeDoc {
	return []exitCodeDoc{
		{exitMail, "mail was delivered (by at least one account); for check: new mail is waiting"},
		{exitNoMail, "no new mail"},
		{exitSocket, "network or TLS error: could not connect, timed out, connection lost, certificate refused"},
		{exitAuth, "authentication failed: the server refused the credentials"},
		{exitProtocol, "protocol error: the server broke the protocol or lacks a feature the account needs"},
		{exitConfig, "usage or configuration error"},
		{exitPermissions, "the config file (or a password file) is readable by others, or the state file is not accessible"},
		{exitServer, "the server reported an error"},
		{exitStateLocked, "another popfetch holds the state directory"},
		{exitMailboxLocked, "the server says the mailbox is locked (in use by another client)"},
		{exitDelivery, "a message could not be delivered; it stays on the server"},
		{exitFetchLimit, "fetch_limit was reached; more mail is waiting"},
		{exitInternal, "internal error, or the UID store failed or is damaged"},
		{exitInterrupted, "stopped by SIGINT or SIGTERM before the run was done (a one-shot run; the daemon exits 0)"},
	}
}

// exitCodesHelp is the exit codes for --help, one a line.
func exitCodesHelp() string {
	var b strings.Builder
	b.WriteString("Exit codes (as fetchmail's):")
	for _, e := range exitCodeTable() {
		fmt.Fprintf(&b, "\n%4d  %s", e.code, e.meaning)
	}
	return b.String()
}

// exitStatus is how a command that did not fail says its exit code
// (1: no mail, 13: fetch limit reached...): it travels back as the
// command's error, the one way every exit code takes.
type exitStatus int

func (s exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

// statusErr returns code as a command's error: nil for 0.
func statusErr(code int) error {
	if code == exitMail {
		return nil
	}
	return exitStatus(code)
}

// exitCodeOf maps an error to its exit code, in one table, as restic's
// main does; an error it does not know is an internal error (23).
func exitCodeOf(err error) int {
	var (
		status  exitStatus
		fe      *fetch.Error
		perm    *config.PermissionError
		cerr    *config.Error
		unknown *config.UnknownAccountError
		serr    *config.SyntaxError
		uerr    usageError
		imp     configProblem
		running *daemonRunningError
		oerr    *oauth2token.Error
		oerr2   *uidstore.OpenError
	)
	switch {
	case err == nil:
		return exitMail
	case errors.As(err, &status):
		return int(status)
	case errors.As(err, &perm):
		return exitPermissions
	case errors.As(err, &cerr), errors.As(err, &unknown), errors.As(err, &serr), errors.As(err, &uerr), errors.As(err, &imp):
		return exitConfig
	case errors.Is(err, uidstore.ErrLocked), errors.As(err, &running):
		return exitStateLocked
	case errors.As(err, &oerr2):
		if errors.Is(oerr2, fs.ErrPermission) {
			return exitPermissions
		}
		return exitInternal
	case errors.As(err, &oerr) && !errors.As(err, &fe):
		// popfetch auth: the provider could not be reached, or refused.
		if oerr.Temporary() {
			return exitSocket
		}
		return exitAuth
	case errors.As(err, &fe):
		switch fe.Kind {
		case fetch.KindNetwork, fetch.KindTLS:
			return exitSocket
		case fetch.KindAuth:
			return exitAuth
		case fetch.KindProtocol:
			return exitProtocol
		case fetch.KindConfig:
			if errors.As(fe.Err, &perm) {
				return exitPermissions
			}
			return exitConfig
		case fetch.KindServer:
			return exitServer
		case fetch.KindLocked:
			return exitMailboxLocked
		case fetch.KindStoreLocked:
			return exitStateLocked
		case fetch.KindDelivery:
			return exitDelivery
		case fetch.KindCanceled:
			return exitInterrupted
		}
	}
	return exitInternal
}

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// combine turns the per-account exit codes of one run into the run's exit
// code: 0 if any account delivered mail, else the worst failure (the
// highest code), else 13 if a fetch limit held mail back, else 1.
func combine(codes []int) int {
	worst, sawLimit, delivered := exitNoMail, false, false
	for _, c := range codes {
		switch c {
		case exitMail:
			delivered = true
		case exitFetchLimit:
			sawLimit = true
		case exitNoMail:
		default:
			worst = max(worst, c)
		}
	}
	switch {
	case sawLimit && worst == exitNoMail:
		return exitFetchLimit
	case delivered || sawLimit:
		return exitMail
	}
	return worst
}
