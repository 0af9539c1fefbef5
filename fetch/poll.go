// Package fetch runs one poll of one POP3 account: it connects, logs in,
// lists the mailbox, downloads the messages not yet delivered, delivers
// them and, unless the account keeps mail on the server, deletes them.
//
// The order of steps for each message is the rule that no mail is lost:
// the message is streamed into its delivery target and made durable, its
// UID is committed to the UID store, and only then is DELE sent. A crash at
// any point loses nothing; at worst a message is delivered twice.
package fetch

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/uidstore"
)

// TLSMode says how a connection is secured.
type TLSMode string

// The TLS modes.
const (
	TLSImplicit TLSMode = "implicit" // TLS from the start (POP3S)
	TLSStartTLS TLSMode = "starttls" // STLS upgrade, required
	TLSNone     TLSMode = "none"     // plaintext
)

// AuthMode says how to log in.
type AuthMode string

// The authentication modes.
const (
	AuthAuto AuthMode = "auto" // USER/PASS over TLS; APOP on plaintext if offered
	AuthUser AuthMode = "user" // USER/PASS
	AuthAPOP AuthMode = "apop" // APOP only
)

// Account is everything a poll needs to know about one mailbox.
type Account struct {
	Name   string
	Server string
	Port   int
	TLS    TLSMode
	// TLSConfig verifies the server; nil means the system roots. Its
	// ServerName defaults to Server.
	TLSConfig *tls.Config
	User      string
	// Password returns the password; it is called once per poll.
	Password          func(context.Context) (string, error)
	Auth              AuthMode
	AllowInsecureAuth bool
	Keep              bool
	SizeLimit         int64 // leave larger messages on the server; 0: no limit
	FetchLimit        int   // fetch at most this many messages; 0: no limit
	Recipient         string
	AddReceived       bool
	Timeout           time.Duration // connecting, and every read and write
}

// Key returns the UID store key of the account's mailbox.
func (a *Account) Key() uidstore.Key {
	return uidstore.Key{Server: strings.ToLower(a.Server), Port: a.Port, User: a.User}
}

// NewTLSConfig returns the TLS configuration for a server: TLS 1.2 or
// later, the server's name verified against the system roots or, if
// caFile is set, against the PEM certificates in it.
func NewTLSConfig(server, caFile string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: server, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificates in it", caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// Stats counts what a poll did.
type Stats struct {
	Messages     int   // messages on the server
	New          int   // messages not delivered before
	Delivered    int   // messages delivered in this poll
	Bytes        int64 // octets delivered
	Skipped      int   // new messages left on the server for size_limit
	Failed       int   // messages whose delivery failed (left on the server)
	Deleted      int   // messages deleted from the server (counted once QUIT succeeded)
	LimitReached bool  // fetch_limit stopped the poll with new messages left
}

// Options are the poll's surroundings.
type Options struct {
	// Log receives a line per message at Debug level and warnings.
	// Nil discards.
	Log *slog.Logger
	// Trace, if set, receives the protocol trace (secrets redacted).
	Trace io.Writer
}

// maxConsecutiveFailures stops a poll whose deliveries keep failing (a
// full disk, a broken MDA) instead of downloading the whole mailbox for
// nothing.
const maxConsecutiveFailures = 3

// Poll fetches the new mail of one account into d. The store must be
// open; the UIDs of delivered messages are recorded in it.
func Poll(ctx context.Context, acct *Account, store *uidstore.Store, d deliver.Deliverer, opts *Options) (Stats, error) {
	s := newSession(acct, store, d, opts)
	if err := s.run(ctx); err != nil {
		return s.stats, classify(acct.Name, s.step, err)
	}
	if s.deliveryErr != nil {
		return s.stats, classify(acct.Name, "deliver", s.deliveryErr)
	}
	return s.stats, nil
}

// Check counts the messages on the server and how many of them are new,
// without downloading or deleting anything. Without UIDL every message
// counts as new.
func Check(ctx context.Context, acct *Account, store *uidstore.Store, opts *Options) (Stats, error) {
	s := newSession(acct, store, nil, opts)
	defer s.close()
	msgs, _, err := s.open(ctx)
	if err == nil {
		for _, m := range msgs {
			if !m.seen {
				s.stats.New++
			}
		}
		s.step = "QUIT"
		err = s.c.Quit(ctx)
	}
	if err != nil {
		return s.stats, classify(acct.Name, s.step, err)
	}
	return s.stats, nil
}

func newSession(acct *Account, store *uidstore.Store, d deliver.Deliverer, opts *Options) *session {
	if opts == nil {
		opts = &Options{}
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	return &session{acct: acct, store: store, d: d, log: log.With("account", acct.Name), trace: opts.Trace, host: host}
}

type session struct {
	acct        *Account
	store       *uidstore.Store
	d           deliver.Deliverer
	log         *slog.Logger
	trace       io.Writer
	host        string // this host's name, for Received fields
	c           *pop3.Client
	caps        pop3.Capabilities // nil if the server has no CAPA
	step        string            // the command in progress, for error classification
	stats       Stats
	deliveryErr error // the last delivery failure, if the poll went on
}

// message is one message on the server.
type message struct {
	num  int
	uid  string // "" without UIDL
	size int64
	seen bool
}

// open connects, logs in and lists the mailbox.
func (s *session) open(ctx context.Context) ([]message, bool, error) {
	if err := s.connect(ctx); err != nil {
		return nil, false, err
	}
	if err := s.login(ctx); err != nil {
		return nil, false, err
	}
	msgs, hasUIDL, err := s.list(ctx)
	s.stats.Messages = len(msgs)
	return msgs, hasUIDL, err
}

// close drops the connection if it is still open (after QUIT it is not).
func (s *session) close() {
	if s.c != nil {
		s.c.Close()
	}
}

func (s *session) run(ctx context.Context) error {
	defer s.close()
	msgs, hasUIDL, err := s.open(ctx)
	if err != nil {
		return err
	}
	if s.acct.Keep && !hasUIDL && len(msgs) > 0 {
		return &Error{Account: s.acct.Name, Kind: KindConfig,
			Err: errors.New("the server does not support UIDL, so keep = true cannot tell new mail from old; use keep = false")}
	}
	deleted, err := s.transfer(ctx, msgs, hasUIDL)
	if err != nil {
		return err
	}
	if hasUIDL {
		present := make([]string, len(msgs))
		for i, m := range msgs {
			present[i] = m.uid
		}
		if n, err := s.store.Prune(s.acct.Key(), present); err != nil {
			return err
		} else if n > 0 {
			s.log.Debug("forgot UIDs no longer on the server", "count", n)
		}
	}
	s.step = "QUIT"
	if err := s.c.Quit(ctx); err != nil {
		return err
	}
	s.stats.Deleted = deleted
	return nil
}

// connect dials, secures the connection as configured and reads CAPA. The
// caller closes s.c (see close), also when connect fails.
func (s *session) connect(ctx context.Context) error {
	a := s.acct
	addr := net.JoinHostPort(a.Server, strconv.Itoa(a.Port))
	opts := &pop3.Options{Timeout: a.Timeout}
	if s.trace != nil {
		opts.Debug = &prefixWriter{w: s.trace, prefix: a.Name + " "}
	}
	tcfg := a.TLSConfig
	if tcfg == nil {
		tcfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tcfg = tcfg.Clone()
	if tcfg.ServerName == "" {
		tcfg.ServerName = a.Server
	}
	dctx := ctx
	if a.Timeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, a.Timeout)
		defer cancel()
	}
	s.step = "connect"
	var err error
	if a.TLS == TLSImplicit {
		s.c, err = pop3.DialTLS(dctx, addr, tcfg, opts)
	} else {
		s.c, err = pop3.Dial(dctx, addr, opts)
	}
	if err != nil {
		return err
	}
	if a.TLS == TLSStartTLS {
		s.step = "STLS"
		if err := s.c.StartTLS(dctx, tcfg); err != nil {
			if errors.Is(err, pop3.ErrNoSTLS) {
				return fmt.Errorf("%w; refusing to continue without TLS (tls = \"starttls\")", err)
			}
			return err
		}
	}
	// CAPA (again, after STLS). A server without CAPA answers -ERR: it is
	// an RFC 1939 server, and s.caps stays nil.
	s.step = "CAPA"
	caps, err := s.c.Capa(ctx)
	var perr *pop3.Error
	if err != nil && !errors.As(err, &perr) {
		return err
	}
	s.caps = caps
	return nil
}

// login authenticates as the account says, never sending a secret over an
// unencrypted connection unless allow_insecure_auth is set.
func (s *session) login(ctx context.Context) error {
	a := s.acct
	if !s.c.IsTLS() && !a.AllowInsecureAuth {
		return &Error{Account: a.Name, Kind: KindConfig,
			Err: errors.New("refusing to send the password over an unencrypted connection (set allow_insecure_auth = true to allow it)")}
	}
	if a.Password == nil {
		return &Error{Account: a.Name, Kind: KindConfig, Err: errors.New("no password")}
	}
	s.step = "password"
	pw, err := a.Password(ctx)
	if err != nil {
		return &Error{Account: a.Name, Kind: KindConfig, Err: err}
	}
	useAPOP := a.Auth == AuthAPOP || (a.Auth == AuthAuto && !s.c.IsTLS() && s.c.APOPTimestamp() != "")
	if useAPOP {
		s.step = "APOP"
		return s.c.APOP(ctx, a.User, pw)
	}
	s.step = "USER"
	if err := s.c.User(ctx, a.User); err != nil {
		return err
	}
	s.step = "PASS"
	return s.c.Pass(ctx, pw)
}

// list returns the messages on the server with their sizes, UIDs (if the
// server has UIDL) and whether they were delivered before.
func (s *session) list(ctx context.Context) ([]message, bool, error) {
	s.step = "LIST"
	sizes, err := s.c.List(ctx)
	if err != nil {
		return nil, false, err
	}
	msgs := make([]message, len(sizes))
	index := make(map[int]int, len(sizes))
	for i, sz := range sizes {
		if _, dup := index[sz.Number]; dup {
			return nil, false, &pop3.ProtocolError{Op: "LIST", Msg: fmt.Sprintf("message %d listed twice", sz.Number)}
		}
		index[sz.Number] = i
		msgs[i] = message{num: sz.Number, size: sz.Size}
	}
	s.step = "UIDL"
	uids, err := s.c.UIDL(ctx)
	var perr *pop3.Error
	if errors.As(err, &perr) && !s.caps.Has("UIDL") && perr.Code == "" {
		return msgs, false, nil // a server without UIDL
	}
	if err != nil {
		return nil, false, err
	}
	byUID := make(map[string]bool, len(uids))
	for _, u := range uids {
		i, ok := index[u.Number]
		if !ok {
			continue // not in LIST: deleted or never there; ignore
		}
		if byUID[u.UID] {
			// Two messages with one UID cannot be told apart; deleting
			// by UID could delete the wrong one. Stop before doing harm.
			return nil, false, &pop3.ProtocolError{Op: "UIDL", Msg: fmt.Sprintf("UID %q is used by more than one message", u.UID)}
		}
		byUID[u.UID] = true
		msgs[i].uid = u.UID
	}
	uidList := make([]string, len(msgs))
	for i, m := range msgs {
		if m.uid == "" {
			return nil, false, &pop3.ProtocolError{Op: "UIDL", Msg: fmt.Sprintf("message %d has no UID", m.num)}
		}
		uidList[i] = m.uid
	}
	seen, err := s.store.Seen(s.acct.Key(), uidList)
	if err != nil {
		return nil, false, err
	}
	for i := range msgs {
		msgs[i].seen = seen[i]
	}
	return msgs, true, nil
}

// transfer delivers the new messages and marks for deletion what may be
// deleted. It returns how many messages were marked.
func (s *session) transfer(ctx context.Context, msgs []message, hasUIDL bool) (int, error) {
	a := s.acct
	deleted, fetched, failures := 0, 0, 0
	for _, m := range msgs {
		if m.seen {
			// Delivered in an earlier poll; its DELE did not take effect
			// (keep was on, or that session broke before QUIT).
			if !a.Keep {
				s.step = "DELE"
				if err := s.c.Dele(ctx, m.num); err != nil {
					return deleted, err
				}
				deleted++
			}
			continue
		}
		s.stats.New++
		if a.SizeLimit > 0 && m.size > a.SizeLimit {
			s.stats.Skipped++
			s.log.Info("message larger than size_limit left on the server",
				"uid", m.uid, "number", m.num, "size", m.size, "size_limit", a.SizeLimit)
			continue
		}
		if a.FetchLimit > 0 && fetched >= a.FetchLimit {
			s.stats.LimitReached = true
			continue // still DELE the seen ones
		}
		fetched++
		err := s.fetchOne(ctx, m)
		var derr *deliver.Error
		if errors.As(err, &derr) {
			s.stats.Failed++
			s.deliveryErr = err
			s.log.Error("delivery failed; message left on the server", "uid", m.uid, "number", m.num, "err", err)
			failures++
			if failures >= maxConsecutiveFailures {
				return deleted, fmt.Errorf("giving up after %d failed deliveries in a row: %w", failures, err)
			}
			continue
		}
		if err != nil {
			return deleted, err
		}
		failures = 0
		if hasUIDL {
			s.step = "record"
			if err := s.store.Record(a.Key(), m.uid); err != nil {
				return deleted, err
			}
		}
		if !a.Keep {
			s.step = "DELE"
			if err := s.c.Dele(ctx, m.num); err != nil {
				return deleted, err
			}
			deleted++
		}
	}
	return deleted, nil
}

// fetchOne streams message m into the deliverer.
func (s *session) fetchOne(ctx context.Context, m message) error {
	s.step = "RETR"
	body, err := s.c.Retr(ctx, m.num)
	if err != nil {
		return err
	}
	defer body.Close()
	src := &sourceReader{r: body}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		src.head = &bytes.Buffer{}
	}
	var r io.Reader = src
	if s.acct.AddReceived {
		r = io.MultiReader(strings.NewReader(s.received(m)), src)
	}
	start := time.Now()
	s.step = "deliver"
	err = s.d.Deliver(ctx, r, deliver.Envelope{Recipient: s.acct.Recipient})
	if src.err != nil {
		// The message was cut short: a network failure, not a delivery one.
		s.step = "RETR"
		return src.err
	}
	if err != nil {
		return err
	}
	if !src.eof {
		return fmt.Errorf("internal error: the deliverer reported success without reading the whole message %d", m.num)
	}
	s.stats.Delivered++
	s.stats.Bytes += body.Size()
	if src.head != nil {
		s.log.Debug("delivered", "uid", m.uid, "number", m.num, "size", body.Size(),
			"subject", subject(src.head.Bytes()), "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func (s *session) received(m message) string {
	with := "POP3"
	if s.c.IsTLS() {
		with = "POP3S"
	}
	addr := ""
	if ta, ok := s.c.RemoteAddr().(*net.TCPAddr); ok {
		addr = ta.IP.String()
	}
	id := m.uid
	if id == "" {
		id = strconv.Itoa(m.num)
	}
	return deliver.Trace{From: s.acct.Server, FromAddr: addr, By: s.host, With: with, ID: id,
		For: s.acct.Recipient, Date: time.Now()}.Header()
}

// sourceReader remembers how the message stream ended, and keeps the
// start of the message for the log line when head is set.
type sourceReader struct {
	r    io.Reader
	err  error
	eof  bool
	head *bytes.Buffer
}

const maxHead = 16 << 10

func (r *sourceReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if r.head != nil && r.head.Len() < maxHead {
		r.head.Write(p[:min(n, maxHead-r.head.Len())])
	}
	switch {
	case err == io.EOF:
		r.eof = true
	case err != nil:
		r.err = err
	}
	return n, err
}

// subject returns the decoded Subject of a message header, "" if none.
func subject(head []byte) string {
	h, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(head))).ReadMIMEHeader()
	subj := h.Get("Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(subj); err == nil {
		subj = dec
	}
	if len(subj) > 200 {
		subj = subj[:200]
	}
	return subj
}

// prefixWriter prefixes every line written to w.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	_, err := io.WriteString(p.w, p.prefix+string(b))
	return len(b), err
}
