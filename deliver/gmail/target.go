package gmail

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/popfetch/popfetch/deliver"
)

// DefaultLabels returns the labels a message gets when none are
// configured: INBOX and UNREAD, so that it arrives in the inbox unread,
// as mail that came by SMTP does.
func DefaultLabels() []string { return []string{"INBOX", "UNREAD"} }

// Target delivers into a Gmail mailbox with users.messages.import. It is
// a deliver.Deliverer: Stage spools the message (with CRLF line endings,
// as RFC 5322 has them) to an unlinked file; Publish imports it in one
// request; Flush has nothing to do, since Google's reply to the import is
// its promise that the message is stored.
//
// Labels are given by name and looked up once per Target (a Target
// serves one poll); user labels that do not exist are created on first
// use. Target is safe for Publish from several goroutines.
type Target struct {
	// Client talks to the API; it must be set.
	Client *Client
	// Name names the target in errors, e.g. "gmail me@gmail.com"; ""
	// means "gmail".
	Name string
	// Labels are the names of the labels each message gets; nil means
	// DefaultLabels(). An empty, non-nil list gives none: the message is
	// then only in All Mail (archived).
	Labels []string
	// NeverMarkSpam asks Gmail never to put the messages in SPAM.
	NeverMarkSpam bool
	// SpoolDir is where messages are spooled; "" means os.TempDir().
	SpoolDir string
	// Identity names the mailbox in pending records (the account's name
	// and the token file, say): a record of another identity is not this
	// Target's to settle. "" means Name.
	Identity string
	// SettleGrace is how old a pending record must be before Settle
	// reports its message missing; 0 means DefaultSettleGrace.
	SettleGrace time.Duration

	mu       sync.Mutex // guards labelIDs
	labelIDs []string   // resolved; nil until the first Publish
}

func (t *Target) target() string {
	if t.Name != "" {
		return t.Name
	}
	return "gmail"
}

// Stage implements deliver.Deliverer: it copies the message to an
// unlinked spool file, turning each bare LF into CRLF, and reads its
// Message-ID.
func (t *Target) Stage(ctx context.Context, r io.Reader, env deliver.Envelope) (deliver.Staged, error) {
	f, size, err := spoolCRLF(t.SpoolDir, t.target(), r)
	if err != nil {
		return nil, err
	}
	if size > MaxMessageSize {
		f.Close()
		return nil, &deliver.Error{Target: t.target(), Err: fmt.Errorf("the message is %d octets; Gmail imports at most %d", size, MaxMessageSize)}
	}
	id := messageID(io.NewSectionReader(f, 0, size))
	return &Staged{t: t, f: f, size: size, id: id}, nil
}

// Flush implements deliver.Deliverer: an import Google answered with
// success is stored; there is nothing to wait for.
func (t *Target) Flush() error { return nil }

// EachDurable implements deliver.EachDurable: an import Google answered
// with success is stored, and an import is a round trip to Google, next
// to which a commit of the UID store costs little.
func (t *Target) EachDurable() bool { return true }

// Close implements deliver.Deliverer: it closes idle connections.
func (t *Target) Close() error {
	if t.Client != nil {
		t.Client.CloseIdleConnections()
	}
	return nil
}

// Delivered tells whether a message recorded as pending by an interrupted
// run is in the mailbox, by its Message-ID (without angle brackets): a
// message with that Message-ID in the mailbox, in any label, spam and
// trash included, counts as delivered: a copy that reached the mailbox
// another way is taken as this one, as Gmail itself does when one message
// reaches it twice by SMTP. A message without a Message-ID (id == "") cannot be
// found: Delivered reports false, and the message is fetched and
// imported again (it may then be in the mailbox twice).
func (t *Target) Delivered(ctx context.Context, id string) (bool, error) {
	if id == "" || !searchable(id) {
		return false, nil
	}
	ids, err := t.Client.FindByMessageID(ctx, id)
	if err != nil {
		return false, t.wrap(err)
	}
	return len(ids) > 0, nil
}

// labels returns the ids of t's labels, looking them up (and creating
// user labels that do not exist) the first time.
func (t *Target) labels(ctx context.Context) ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.labelIDs != nil {
		return t.labelIDs, nil
	}
	names := t.Labels
	if names == nil {
		names = DefaultLabels()
	}
	ids := make([]string, 0, len(names))
	if len(names) == 0 {
		t.labelIDs = ids
		return ids, nil
	}
	all, err := t.Client.Labels(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		id, ok := findLabel(all, name)
		if !ok {
			l, err := t.Client.CreateLabel(ctx, name)
			var ae *APIError
			switch {
			case err == nil:
				id = l.ID
				all = append(all, *l)
			case errors.As(err, &ae) && ae.HTTPStatus == http.StatusConflict:
				// Created meanwhile (another poll into the same
				// mailbox): look again.
				if all, err = t.Client.Labels(ctx); err != nil {
					return nil, err
				}
				if id, ok = findLabel(all, name); !ok {
					return nil, fmt.Errorf("label %q: Gmail says it exists but does not list it: %w", clean(name, 80), ae)
				}
			default:
				return nil, fmt.Errorf("label %q: %w", clean(name, 80), err)
			}
		}
		ids = append(ids, id)
	}
	t.labelIDs = ids
	return ids, nil
}

// findLabel finds a label by id (system labels' ids are their names:
// INBOX, UNREAD), else by name, else by name without regard to case
// (Gmail refuses to create a label whose name differs from another's only
// in case).
func findLabel(all []Label, name string) (string, bool) {
	for _, l := range all {
		if l.ID == name || l.Name == name {
			return l.ID, true
		}
	}
	for _, l := range all {
		if strings.EqualFold(l.Name, name) || l.Type == "system" && strings.EqualFold(l.ID, name) {
			return l.ID, true
		}
	}
	return "", false
}

// wrap makes err a *deliver.Error, temporary unless it says otherwise: a
// reply of the API decides by its status, a token source's error by its
// own Temporary; a failure of the network, or one after which the outcome
// is unknown, is temporary (net/http's *url.Error says Temporary false
// for a connection cut short, which is not what is meant here).
func (t *Target) wrap(err error) error {
	var de *deliver.Error
	if errors.As(err, &de) {
		return err
	}
	return &deliver.Error{Target: t.target(), Temporary: temporary(err), Err: err}
}

func temporary(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch e := e.(type) {
		case *APIError:
			return e.Temporary()
		case *url.Error:
			return true
		case interface{ Temporary() bool }:
			return e.Temporary()
		}
		if e == errAmbiguous {
			return true
		}
	}
	return true
}

// Staged is a message spooled for import.
type Staged struct {
	t    *Target
	f    *os.File
	size int64
	id   string
}

// MessageID returns the message's Message-ID without angle brackets, or
// "" if it has none that can be searched for. A caller records it with
// the pending delivery, for Delivered.
func (s *Staged) MessageID() string { return s.id }

// Size returns the size of the message as imported (CRLF line endings).
func (s *Staged) Size() int64 { return s.size }

// Publish implements deliver.Staged: it imports the message.
func (s *Staged) Publish(ctx context.Context) error {
	if s.f == nil {
		return &deliver.Error{Target: s.t.target(), Err: errors.New("publish after abort")}
	}
	defer s.Abort()
	ids, err := s.t.labels(ctx)
	if err != nil {
		// No label lookup, no import: the API cannot be reached, or
		// refuses the token. The next message would fare no better.
		err = s.t.wrap(err)
		var de *deliver.Error
		if errors.As(err, &de) {
			de.Down = true
		}
		return err
	}
	_, err = s.t.Client.Import(ctx, s.f, s.size, ImportOptions{LabelIDs: ids, NeverMarkSpam: s.t.NeverMarkSpam, MessageID: s.id})
	if err != nil {
		return s.t.wrap(err)
	}
	return nil
}

// Abort implements deliver.Staged.
func (s *Staged) Abort() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// spoolCRLF copies r to an unlinked file in dir, each LF not already
// preceded by CR written as CRLF, and returns the file and its size. A
// failure of r is returned unwrapped; of the spool, as *deliver.Error.
func spoolCRLF(dir, target string, r io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp(dir, "popfetch-gmail-*")
	if err != nil {
		return nil, 0, &deliver.Error{Target: target, Temporary: true, Err: fmt.Errorf("spool: %w", err)}
	}
	os.Remove(f.Name())
	w := bufio.NewWriterSize(f, 64<<10)
	buf := make([]byte, 64<<10)
	var n int64
	prevCR := false
	fail := func(err error) (*os.File, int64, error) {
		f.Close()
		return nil, 0, &deliver.Error{Target: target, Temporary: true, Err: fmt.Errorf("spool: %w", err)}
	}
	for {
		m, rerr := r.Read(buf)
		chunk := buf[:m]
		for len(chunk) > 0 {
			i := indexLF(chunk)
			if i < 0 {
				if _, err := w.Write(chunk); err != nil {
					return fail(err)
				}
				n += int64(len(chunk))
				prevCR = chunk[len(chunk)-1] == '\r'
				break
			}
			if _, err := w.Write(chunk[:i]); err != nil {
				return fail(err)
			}
			n += int64(i)
			cr := prevCR
			if i > 0 {
				cr = chunk[i-1] == '\r'
			}
			if !cr {
				w.WriteByte('\r')
				n++
			}
			if err := w.WriteByte('\n'); err != nil {
				return fail(err)
			}
			n++
			prevCR = false
			chunk = chunk[i+1:]
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Close()
			return nil, 0, rerr // the message is incomplete
		}
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	return f, n, nil
}

func indexLF(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}

// maxHeader bounds how much of a message is read for its Message-ID.
const maxHeader = 1 << 20

// messageID returns the message's Message-ID (RFC 5322 section 3.6.4)
// without its angle brackets, or "" if it has none, more than one, or one
// that is not fit for a search query.
func messageID(r io.Reader) string {
	m, err := mail.ReadMessage(io.LimitReader(r, maxHeader))
	if err != nil {
		return ""
	}
	v := m.Header["Message-Id"]
	if len(v) != 1 {
		return ""
	}
	id := strings.TrimSpace(v[0])
	if i := strings.IndexByte(id, '('); i >= 0 { // a trailing comment
		id = strings.TrimSpace(id[:i])
	}
	id, ok := strings.CutPrefix(id, "<")
	if !ok {
		return ""
	}
	id, ok = strings.CutSuffix(id, ">")
	if !ok || !searchable(id) {
		return ""
	}
	return id
}

// CheckLabels checks configured label names before any request is made,
// for the mistakes a configuration can hold: an empty name, one with
// control characters or white space around it, the same label twice
// (names match without regard to case), and the labels Gmail keeps for
// its own use that an imported message cannot get (DRAFT, SENT, CHAT).
func CheckLabels(names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		switch {
		case strings.TrimSpace(n) == "":
			return errors.New("an empty label name")
		case strings.TrimSpace(n) != n:
			return fmt.Errorf("label %q has white space around it", clean(n, 80))
		case strings.ContainsFunc(n, func(r rune) bool { return r < ' ' || r == 0x7f }):
			return fmt.Errorf("label %q has control characters", clean(n, 80))
		case strings.EqualFold(n, "DRAFT"), strings.EqualFold(n, "SENT"), strings.EqualFold(n, "CHAT"):
			return fmt.Errorf("label %q is Gmail's own; an imported message cannot have it", n)
		case seen[strings.ToLower(n)]:
			return fmt.Errorf("label %q is listed twice", clean(n, 80))
		}
		seen[strings.ToLower(n)] = true
	}
	return nil
}
