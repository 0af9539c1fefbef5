// Package deliver puts messages where the user reads them: into a Maildir
// (durably: written, fsync'd, renamed into new/, directory fsync'd) or
// through a mail delivery agent (MDA) run without a shell.
//
// A Deliverer reads a message from an io.Reader to its end. If the reader
// fails, the message is incomplete and is never published or piped.
// Delivery has two steps, Stage and Publish, and a Flush per batch, so
// that a caller can keep reading the network while earlier messages are
// fsync'd. This package knows nothing of POP3.
package deliver

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// Deliverer delivers messages in two steps, so that new messages can be
// written while earlier ones are being made durable.
type Deliverer interface {
	// Stage reads the message (LF line endings) from r to its end and
	// writes it somewhere temporary: nothing is visible or durable yet.
	// If r fails, nothing is kept and r's error is returned unwrapped;
	// failures of the target are returned as *Error.
	Stage(ctx context.Context, r io.Reader, env Envelope) (Staged, error)
	// Flush makes every message whose Publish returned before Flush was
	// called durable (a Maildir fsyncs new/). Only then may a message be
	// deleted from the server.
	Flush() error
	// Close releases what the Deliverer holds. Messages staged and not
	// published are lost (and must not have been deleted from the
	// server).
	Close() error
}

// Staged is a message written but not yet delivered.
type Staged interface {
	// Publish delivers the message: afterwards it is visible to the
	// user, and durable once the Deliverer's Flush returns. A caller
	// publishes messages in the order they are to be seen, one at a
	// time; a Deliverer is still safe for Publish from several goroutines
	// (two polls, one target).
	Publish(ctx context.Context) error
	// Abort throws the message away; after Publish it does nothing.
	Abort()
}

// Syncer is implemented by a Staged message that has work to do before
// Publish which may run alongside other messages' (a Maildir file's
// fsync): a caller may call Sync from several goroutines at once, for
// different messages, and publish each in order afterwards. Publish does
// the work itself if Sync was not called.
type Syncer interface {
	Sync(ctx context.Context) error
}

// Marker is implemented by a Deliverer whose Flush waits on another
// machine (IMAP: the answers to APPENDs). Mark returns a wait that does
// what Flush would do now, for the messages published before Mark was
// called, and does not wait for those published after: a caller may
// publish the next batch while the answers for the last are on their
// way, instead of paying a round trip a batch. The waits are called in
// the order of their Marks, each once, from one goroutine at a time.
type Marker interface {
	Mark() (wait func() error)
}

// Envelope is what a delivery knows about a message besides its content.
type Envelope struct {
	// Recipient is the local recipient, substituted for %T in MDA argv.
	Recipient string
	// Prepended is how many octets at the start of the message the
	// caller added (a Received field of its own): a target that reads
	// the message's own fields (the date an IMAP APPEND gives it) skips
	// them.
	Prepended int64
}

// Ref says how a target finds a message it was given, after a crash that
// left the delivery's outcome unknown. The caller records it, as pending,
// before Publish, and hands it back to the Deliverer's Settle at the next
// poll. Kind names the target ("imap", "gmail"); Target is its identity
// (server, user and folder: a Ref of another identity is not the
// Deliverer's to settle); Key is the Deliverer's own, opaque to callers.
// A Maildir does not use Ref: its pending records are its file names
// (see Named and FindDelivered).
type Ref struct {
	Kind   string
	Target string
	Key    string
	// Begun is when the delivery was recorded as begun, or up to a
	// second later (never earlier: the store keeps whole seconds): set
	// for Settle, ignored when recording.
	Begun time.Time
}

// Referenced is implemented by a Staged message whose Ref is known before
// Publish.
type Referenced interface {
	Ref() Ref
}

// EachDurable is implemented by a Deliverer whose Publish, once it
// returned nil, has put the message at the target for good (its Flush
// adds nothing), and whose Publish is slow next to a commit of the UID
// store: a round trip to a remote service. If EachDurable reports true,
// the caller records each message as delivered as soon as it is
// published, instead of once per batch, so that an interruption leaves
// unknown only the message being published. That matters for a message
// whose delivery cannot be settled by asking the target (a Gmail import
// without a Message-ID): it is delivered again only if it was that one.
type EachDurable interface {
	EachDurable() bool
}

// WaitGrace is for a Settler whose target may take a moment to show a
// message (an APPEND still in the server's buffers, a search index that
// lags): it waits until every ref for which missing(i) reports true is
// grace old, counted from its Begun, and reports whether it waited, so
// that the caller looks again. A wait is never longer than grace, also
// for a record written ahead of now (the clock was set back since); it
// ends early with ctx's error.
func WaitGrace(ctx context.Context, refs []Ref, missing func(i int) bool, grace time.Duration) (bool, error) {
	var wait time.Duration
	for i, r := range refs {
		if missing(i) {
			wait = max(wait, time.Until(r.Begun.Add(grace)))
		}
	}
	if wait <= 0 {
		return false, nil
	}
	t := time.NewTimer(min(wait, grace))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-t.C:
		return true, nil
	}
}

// Settler is implemented by a Deliverer that can tell whether messages
// arrived whose delivery a crash interrupted.
type Settler interface {
	// Settles reports whether r is the Deliverer's to settle: its kind
	// and identity.
	Settles(r Ref) bool
	// Settle reports, for each ref, whether the target holds the
	// message. A message it cannot find is reported missing, to be
	// delivered again; an error means it could not ask (and nothing is
	// to be concluded).
	Settle(ctx context.Context, refs []Ref) ([]bool, error)
}

// Error is a failed delivery. Temporary failures (an MDA's EX_TEMPFAIL, a
// full disk) are expected to succeed on a later attempt; permanent ones
// need the user's attention. Either way the message stays on the server.
type Error struct {
	Target    string // "maildir /path" or "mda /usr/bin/procmail"
	Temporary bool
	// Down reports that the target cannot take any message now, not
	// this one only: it could not be reached, or refused the login,
	// before anything of the message was sent. The caller stops
	// delivering for the poll instead of trying each message in turn
	// (each try another login the server refuses, or another wait for a
	// timeout).
	Down bool
	Err  error
}

func (e *Error) Error() string {
	kind := "failed"
	if e.Temporary {
		kind = "failed temporarily"
	}
	return fmt.Sprintf("deliver: %s: %s: %v", e.Target, kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Trace describes a Received: header field (RFC 5321 section 4.4) that
// records how a message reached this machine.
type Trace struct {
	From     string    // the host the message came from
	FromAddr string    // its address, e.g. "192.0.2.1"
	By       string    // this host
	With     string    // the protocol, e.g. "POP3S"
	ID       string    // an identifier, e.g. the message's UID
	For      string    // the recipient
	Date     time.Time // when
}

// Header returns the Received: field, folded, with LF line endings. Values
// are cleaned of characters that would break the field's syntax.
func (t Trace) Header() string {
	var b strings.Builder
	// One allocation for the usual field, not five as it grows.
	b.Grow(64 + len(t.From) + len(t.FromAddr) + len(t.By) + len(t.With) + len(t.ID) + len(t.For) + len(time.RFC1123Z))
	b.WriteString("Received: from ")
	b.WriteString(atom(t.From))
	if t.FromAddr != "" {
		b.WriteString(" (" + atom(t.FromAddr) + ")")
	}
	b.WriteString("\n\tby ")
	b.WriteString(atom(t.By))
	b.WriteString(" with ")
	b.WriteString(atom(t.With))
	if t.ID != "" {
		b.WriteString(" id ")
		b.WriteString(atom(t.ID))
	}
	if t.For != "" {
		b.WriteString("\n\tfor <" + atom(t.For) + ">")
	}
	b.WriteString("; ")
	b.WriteString(t.Date.Format(time.RFC1123Z))
	b.WriteString("\n")
	return b.String()
}

// atom keeps printable ASCII other than the characters that delimit parts
// of a Received field, replacing the rest with '?'.
func atom(s string) string {
	if s == "" {
		return "unknown"
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("()<>;\\\"", r) {
			return '?'
		}
		return r
	}, s)
}
