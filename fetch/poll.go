// Package fetch runs one poll of one POP3 account: it connects, logs in,
// lists the mailbox, downloads the messages not yet delivered, delivers
// them and, unless the account keeps mail on the server, deletes them.
//
// The order of steps for each message is the rule that no mail is lost:
// the message is streamed into its delivery target and made durable, its
// UID is committed to the UID store, and only then is DELE sent. A crash at
// any point loses nothing. For a Maildir nothing is delivered twice either:
// the message's file name is committed as pending before it becomes
// visible, and the next poll looks for it before fetching anything (see
// uidstore.Pending). An MDA's delivery is at least once: a crash after
// the MDA accepted a message and before its UID was committed delivers it
// again.
package fetch

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/plural"
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
	AuthAuto AuthMode = "auto" // the strongest the server offers that we have credentials for
	AuthUser AuthMode = "user" // USER/PASS (RFC 1939)
	AuthAPOP AuthMode = "apop" // APOP (RFC 1939 section 7)
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
	// Password returns the password; it is called once per poll, and
	// only when the chosen mechanism needs it.
	Password func(context.Context) (string, error)
	// Token returns an OAuth 2.0 access token for XOAUTH2 or OAUTHBEARER;
	// nil if the account has none (a token may then come from Password,
	// with Auth naming the mechanism).
	Token func(context.Context) (string, error)
	// TokenRefused, if set, is called when the server refuses a token
	// from Token, so that the next call fetches a new one.
	TokenRefused      func()
	Auth              AuthMode
	AllowInsecureAuth bool
	Keep              bool
	// DeleteAfter, with Keep, deletes messages first delivered at least
	// this long ago; 0: never.
	DeleteAfter time.Duration
	// DeleteLargerThan deletes new messages larger than this without
	// fetching them; 0: never.
	DeleteLargerThan int64
	// FetchAll fetches messages delivered before too.
	FetchAll    bool
	SizeLimit   int64 // leave larger messages on the server; 0: no limit
	FetchLimit  int   // fetch at most this many messages; 0: no limit
	Recipient   string
	AddReceived bool
	// DeliveredTo and EnvelopeTo add a Delivered-To or X-Envelope-To
	// field naming Recipient; ReturnPath adds a Return-Path field with
	// the From address to a message that has none.
	DeliveredTo bool
	EnvelopeTo  bool
	ReturnPath  bool
	Timeout     time.Duration // connecting, every read and write, and every reply line whole
	// PollTimeout is the longest a whole poll may take; 0: no ceiling.
	PollTimeout time.Duration
	Pipelining  PipeliningMode
}

// PipeliningMode says whether to send commands ahead of their replies
// (RFC 2449 PIPELINING).
type PipeliningMode string

// The pipelining modes.
const (
	PipeliningAuto PipeliningMode = "auto" // when the server advertises PIPELINING (the default)
	PipeliningOn   PipeliningMode = "on"   // always, for servers that pipeline without saying so
	PipeliningOff  PipeliningMode = "off"  // never: one command at a time
)

// Key returns the UID store key of the account's mailbox.
func (a *Account) Key() uidstore.Key {
	return uidstore.Key{Server: strings.ToLower(a.Server), Port: a.Port, User: a.User}
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
	Recovered    int   // deliveries an interrupted run left pending that had arrived
	Expired      int   // messages marked for deletion by DeleteAfter
	Discarded    int   // new messages marked for deletion unread by DeleteLargerThan
	LimitReached bool  // fetch_limit stopped the poll with new messages left
	Stopped      bool  // Options.Stop ended the poll with new messages left
	// Auth is how the poll logged in: "user", "apop" or a SASL mode
	// such as "scram-sha-256"; "" if it did not get that far.
	Auth AuthMode
	// LoginDelay is the shortest time between logins the server asks for
	// (RFC 2449 LOGIN-DELAY); 0 if it names none.
	LoginDelay time.Duration
}

// Options are the poll's surroundings.
type Options struct {
	// Log receives a line per message at Debug level and warnings.
	// Nil discards.
	Log *slog.Logger
	// Trace, if set, receives the protocol trace (secrets redacted).
	Trace io.Writer
	// Stop, when closed, ends the poll early and cleanly: the message
	// being read is finished, delivered and recorded, no further RETR is
	// sent, and the session ends. If replies to RETR commands already
	// sent are still to come, the connection is closed without QUIT: the
	// server then keeps every message, and the next poll deletes the
	// delivered ones without fetching them again. Cancelling the context
	// instead abandons the message in progress too.
	Stop <-chan struct{}
	// Progress, if set, is called when the poll knows what it will
	// fetch, after each batch of messages delivered, and once when it
	// ends (Finished), for a progress display. It is called from the
	// poll's goroutines, one call at a time. Setting it makes the poll
	// ask for message sizes (LIST) even when it needs none.
	Progress func(Progress)
	// Memo carries what earlier polls of the account learned (see Memo);
	// nil starts afresh.
	Memo *Memo

	tune *tuning // tests only; nil means defaultTuning
}

// Progress is how far a poll has got.
type Progress struct {
	Account   string
	Messages  int   // to fetch in this poll
	Bytes     int64 // their size, as the server listed it
	Done      int   // delivered so far
	DoneBytes int64
	Finished  bool // the poll is over: no further calls
}

// maxConsecutiveFailures stops a poll whose deliveries keep failing (a
// full disk, a broken MDA) instead of downloading the whole mailbox for
// nothing.
const maxConsecutiveFailures = 3

// Poll fetches the new mail of one account into d. The store must be
// open; the UIDs of delivered messages are recorded in it.
func Poll(ctx context.Context, acct *Account, store *uidstore.Store, d deliver.Deliverer, opts *Options) (Stats, error) {
	ctx, cancel := withCeiling(ctx, acct)
	defer cancel()
	s := newSession(acct, store, d, opts)
	if s.progressFn != nil {
		s.progress.Account = acct.Name
		defer func() {
			s.progress.Finished = true
			s.progressFn(s.progress)
		}()
	}
	if err := s.run(ctx); err != nil {
		return s.stats, classify(acct.Name, ceilingErr(ctx, acct, err))
	}
	if s.softErr != nil {
		return s.stats, classify(acct.Name, s.softErr)
	}
	return s.stats, nil
}

// ceilingCause marks a context ended by Account.PollTimeout.
var ceilingCause = errors.New("poll_timeout reached")

// withCeiling bounds ctx by the account's PollTimeout, if it has one.
func withCeiling(ctx context.Context, acct *Account) (context.Context, context.CancelFunc) {
	if acct.PollTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, acct.PollTimeout, ceilingCause)
}

// ceilingErr says so when err came from the poll's ceiling.
func ceilingErr(ctx context.Context, acct *Account, err error) error {
	// A read's deadline, set from the context's, may fire a moment
	// before the context's own timer: the deadline tells as well.
	d, ok := ctx.Deadline()
	passed := ok && acct.PollTimeout > 0 && errors.Is(err, context.DeadlineExceeded) && !time.Now().Before(d)
	if errors.Is(context.Cause(ctx), ceilingCause) || passed {
		return &Error{Account: acct.Name, Kind: KindNetwork,
			Err: fmt.Errorf("the poll was given up after poll_timeout (%v): a server that sends too slowly, or too much for the time allowed (what was delivered is kept): %w", acct.PollTimeout, err)}
	}
	return err
}

// Check counts the messages on the server and how many of them are new,
// without downloading or deleting anything. Without UIDL every message
// counts as new. Like Poll, it first settles the deliveries an
// interrupted run left pending, so that it counts them right.
// Options.Stop ends it at once.
func Check(ctx context.Context, acct *Account, store *uidstore.Store, opts *Options) (Stats, error) {
	ctx, cancel := withCeiling(ctx, acct)
	defer cancel()
	s := newSession(acct, store, nil, opts)
	defer s.close()
	if err := s.resolvePending(ctx); err != nil {
		return s.stats, classify(acct.Name, err)
	}
	msgs, _, err := s.open(ctx)
	if err == nil {
		for _, m := range msgs {
			if !m.seen {
				s.stats.New++
			}
		}
		err = s.c.Quit(ctx)
	}
	if err != nil {
		return s.stats, classify(acct.Name, ceilingErr(ctx, acct, err))
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
	tune := defaultTuning
	if opts.tune != nil {
		tune = *opts.tune
	}
	return &session{acct: acct, store: store, d: d, log: log.With("account", acct.Name), trace: opts.Trace,
		stop: opts.Stop, host: host, tune: tune, progressFn: opts.Progress, sizes: opts.Progress != nil, memo: opts.Memo}
}

type session struct {
	acct     *Account
	store    *uidstore.Store
	d        deliver.Deliverer
	log      *slog.Logger
	trace    io.Writer
	stop     <-chan struct{} // Options.Stop
	host     string          // this host's name, for Received fields
	c        *pop3.Client
	caps     pop3.Capabilities // nil if the server has no CAPA
	authMode AuthMode          // how the session logged in
	memo     *Memo             // Options.Memo
	lister   *lister           // the UIDL listing, compared with the store as it came in
	sc       shortcut          // the no-new-mail shortcut (shortcut.go)
	stat     statReply         // STAT's answer, if it went with the listing
	keepUIDs bool              // keep every message's UID, seen or not (popfetch list)
	// space is the target's free space as last asked (see room).
	space struct {
		at         time.Time
		free, used int64
	}
	noCapa bool   // the server hung up at CAPA: connected again without it
	expire string // the server's EXPIRE policy (RFC 2449 section 6.7), if it names one
	tune   tuning
	sizes  bool // list sizes whatever the account needs (List, Progress)
	// progressFn is Options.Progress; progress is what it was last told.
	progressFn func(Progress)
	progress   Progress
	stats      Stats
	softErr    error // the last failure the poll went on after (a delivery, a refused RETR or DELE)
}

// pipelining reports whether commands may be sent ahead of their replies.
func (s *session) pipelining() bool {
	switch s.acct.Pipelining {
	case PipeliningOn:
		return true
	case PipeliningOff:
		return false
	}
	return s.caps.Has("PIPELINING")
}

// message is one message on the server.
type message struct {
	num       int
	uid       string // "" without UIDL
	size      int64  // from LIST, if sizeKnown
	sizeKnown bool
	seen      bool
	first     time.Time // when first delivered, if seen
	deferred  bool      // new, but left for the next poll: the listing's UIDs ran past maxKeptUIDBytes
}

// open connects, logs in and lists the mailbox. Until the listing is
// in, nothing is in progress that a stop should let finish: Options.Stop
// ends open at once, with an error that is context.Canceled.
func (s *session) open(ctx context.Context) ([]message, bool, error) {
	openCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.stop != nil {
		go func() {
			select {
			case <-s.stop:
				cancel()
			case <-openCtx.Done():
			}
		}()
	}
	msgs, hasUIDL, err := s.connectAndList(openCtx)
	if err != nil && s.stopping() && ctx.Err() == nil {
		return nil, false, fmt.Errorf("stopped before the mailbox was listed: %w", context.Canceled)
	}
	return msgs, hasUIDL, err
}

func (s *session) connectAndList(ctx context.Context) ([]message, bool, error) {
	if err := s.connect(ctx); err != nil {
		return nil, false, err
	}
	if err := s.login(ctx); err != nil {
		return nil, false, err
	}
	s.stats.Auth = s.authMode
	return s.list(ctx)
}

// stopping reports whether Options.Stop is closed.
func (s *session) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// close drops the connection if it is still open (after QUIT it is not).
func (s *session) close() {
	if s.c != nil {
		s.c.Close()
	}
}

func (s *session) run(ctx context.Context) error {
	defer s.close()
	if err := s.resolvePending(ctx); err != nil {
		return err
	}
	if err := s.loadSummary(); err != nil {
		return err
	}
	msgs, hasUIDL, err := s.open(ctx)
	if err != nil {
		return err
	}
	s.warnExpire()
	if s.acct.Keep && !hasUIDL && len(msgs) > 0 {
		// Nothing was asked to be deleted: QUIT frees the mailbox at
		// once, where a dropped connection may hold its lock a while.
		s.c.Quit(ctx)
		return &Error{Account: s.acct.Name, Kind: KindConfig,
			Err: errors.New("the server does not support UIDL, so keep = true cannot tell new mail from old; use keep = false")}
	}
	toFetch, toDelete := s.plan(msgs)
	if len(toFetch) > 0 && s.stopping() {
		s.log.Debug("stopping: fetching nothing", "new", len(toFetch))
		toFetch = nil
		s.stats.Stopped = true
	}
	if s.progressFn != nil {
		s.progress.Messages = len(toFetch)
		for _, m := range toFetch {
			s.progress.Bytes += m.size
		}
		s.progressFn(s.progress)
	}
	deleted, ended, err := s.transfer(ctx, toFetch, toDelete, hasUIDL)
	if err != nil {
		return err
	}
	if hasUIDL && !s.sc.used {
		// A poll that trusted the summary has nothing to prune: the
		// messages it describes are all still there (see shortcut.go).
		if err := s.prune(); err != nil {
			return err
		}
	}
	if !ended {
		if err := s.c.Quit(ctx); err != nil {
			return err
		}
	}
	s.stats.Deleted = deleted
	return s.saveSummary()
}

// maildir returns the absolute directory of the deliverer if it is a
// Maildir (whose messages can be found again after a crash), else "".
func (s *session) maildir() string {
	md, ok := s.d.(interface{ Dir() string })
	if !ok {
		return ""
	}
	if abs, err := filepath.Abs(md.Dir()); err == nil {
		return abs
	}
	return md.Dir()
}

// resolvePending settles the deliveries an interrupted run left pending
// (see uidstore.Pending): a message whose file reached its Maildir, in new/
// or already in cur/, is recorded as delivered; any other is forgotten, its
// leftover temporary file removed, and fetched again. A record of another
// kind (an IMAP mailbox) is settled by asking the deliverer
// (deliver.Settler), which asks its server; one the deliverer cannot ask
// about (the target was changed in the config since) is fetched again,
// into the target the account has now. Without pending records this costs
// one look-up in the store.
func (s *session) resolvePending(ctx context.Context) error {
	key := s.acct.Key()
	ps, err := s.store.Pending(key)
	if err != nil || len(ps) == 0 {
		return err
	}
	type group struct{ kind, dir string }
	byDir := make(map[group][]uidstore.Pending)
	for _, p := range ps {
		g := group{p.Kind, p.Dir}
		byDir[g] = append(byDir[g], p)
	}
	var delivered, undelivered []string
	for g, ps := range byDir {
		found, err := s.findPending(ctx, g.kind, g.dir, ps)
		if err != nil {
			return fmt.Errorf("resolving the deliveries an interrupted run left pending: %w", err)
		}
		if found == nil {
			continue // left for a poll that delivers
		}
		for i, p := range ps {
			if found[i] {
				delivered = append(delivered, p.UID)
			} else {
				undelivered = append(undelivered, p.UID)
			}
		}
	}
	if err := s.store.Record(key, delivered...); err != nil {
		return err
	}
	if err := s.store.Unpend(key, undelivered...); err != nil {
		return err
	}
	s.stats.Recovered = len(delivered)
	s.log.Info("resolved the deliveries an interrupted run left pending",
		"delivered", len(delivered), "to_fetch_again", len(undelivered))
	return nil
}

// findPending reports which of ps, all of one kind and target, arrived;
// nil if it cannot be known without a deliverer (Check has none).
func (s *session) findPending(ctx context.Context, kind, dir string, ps []uidstore.Pending) ([]bool, error) {
	if kind == "" {
		names := make([]string, len(ps))
		for i, p := range ps {
			names[i] = p.Name
		}
		return deliver.FindDelivered(dir, names)
	}
	refs := make([]deliver.Ref, len(ps))
	for i, p := range ps {
		// The store keeps whole seconds: the record was made up to a
		// second after p.Time, and a target's grace (Settle) counts from
		// the latest it can have been made.
		refs[i] = deliver.Ref{Kind: kind, Target: dir, Key: p.Name, Begun: p.Time.Add(time.Second)}
	}
	if s.d == nil {
		return nil, nil
	}
	st, ok := s.d.(deliver.Settler)
	if !ok || !st.Settles(refs[0]) {
		s.log.Warn("deliveries an interrupted run left pending to a target the account no longer has are fetched again",
			"kind", kind, "target", dir, "messages", len(ps))
		return make([]bool, len(ps)), nil
	}
	return st.Settle(ctx, refs)
}

// connect dials, secures the connection as configured and reads CAPA. The
// caller closes s.c (see close), also when connect fails. A server that
// hangs up at CAPA (an RFC 1939 server that drops a client at a command it
// does not know) is dialled once more and asked nothing it may not know:
// it is then a server without capabilities. With STLS that cannot be, as
// STLS is known only from CAPA.
//
// A server that answered CAPA before (the daemon's Memo knows) is not
// taken for one that does not know it: its hang-up is a broken
// connection, and capabilities (SCRAM, say) are not given up for it.
func (s *session) connect(ctx context.Context) error {
	err := s.dial(ctx, true)
	if err == nil && s.caps != nil {
		s.memo.setCapaWorks()
	}
	var capaErr *capaError
	if errors.As(err, &capaErr) && isHangUp(err) && s.acct.TLS != TLSStartTLS && !s.memo.capaWorks() {
		s.log.Debug("the server hung up at CAPA; connecting again without it", "error", err.Error())
		s.c.Close()
		s.noCapa = true
		err = s.dial(ctx, false)
	}
	return err
}

// capaError is a CAPA that failed other than by -ERR: no reply.
type capaError struct{ err error }

func (e *capaError) Error() string { return e.err.Error() }
func (e *capaError) Unwrap() error { return e.err }

// isHangUp reports whether err is the server closing the connection.
func isHangUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// dial connects and secures the connection, and reads CAPA if capa is set.
func (s *session) dial(ctx context.Context, capa bool) error {
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
	var err error
	if a.TLS == TLSImplicit {
		s.c, err = pop3.DialTLS(dctx, addr, tcfg, opts)
	} else {
		s.c, err = pop3.Dial(dctx, addr, opts)
	}
	if err != nil {
		return dialErr(ctx, a, err)
	}
	if a.TLS == TLSStartTLS {
		if err := s.c.StartTLS(dctx, tcfg); err != nil {
			if errors.Is(err, pop3.ErrNoSTLS) {
				return fmt.Errorf("%w; refusing to continue without TLS (tls = \"starttls\")", err)
			}
			return dialErr(ctx, a, err)
		}
	}
	// CAPA (again, after STLS). A server without CAPA answers -ERR: it is
	// an RFC 1939 server, and s.caps stays nil.
	if !capa {
		return nil
	}
	caps, err := s.c.Capa(ctx)
	var perr *pop3.Error
	if err != nil && !errors.As(err, &perr) {
		return &capaError{err}
	}
	s.caps = caps
	s.learnCaps()
	return nil
}

// dialErr explains an error of connecting, the greeting or the TLS
// handshake. Connecting, the greeting and the handshake share one
// timeout, a deadline of the context: a timeout is said to be that one
// when the poll's own context is not done. A server that answers a TLS
// handshake in plain text is a port or tls setting to change.
func dialErr(ctx context.Context, a *Account, err error) error {
	var te *pop3.TimeoutError
	if errors.As(err, &te) && te.After == 0 && ctx.Err() == nil {
		te.After = a.Timeout
	}
	if te != nil && a.TLS != TLSImplicit && te.Doing == "reading the greeting" {
		// A POP3S port says nothing until it has had a TLS handshake:
		// the most common cause of a greeting that never comes.
		return fmt.Errorf("%w; a POP3S port (usually 995) sends no greeting before a TLS handshake: if port %d is one, use tls = \"implicit\"", err, a.Port)
	}
	var rec tls.RecordHeaderError
	if errors.As(err, &rec) {
		hint := fmt.Sprintf("the server does not speak TLS on port %d", a.Port)
		if h := rec.RecordHeader[0]; h == '+' || h == '-' {
			hint = fmt.Sprintf("the server answered in plain text: it does not speak TLS on port %d", a.Port)
		}
		if a.TLS == TLSImplicit {
			hint += ": use tls = \"starttls\" (or the server's POP3S port, usually 995)"
		} else {
			hint += " after STLS: check port and tls"
		}
		return fmt.Errorf("%w; %s", err, hint)
	}
	return err
}

// maxLoginDelay is the longest LOGIN-DELAY popfetch honours; RFC 2449's
// own examples are minutes.
const maxLoginDelay = 24 * time.Hour

// recapa reports whether the capabilities must be asked for again after
// login: RFC 2449 lets a server advertise EXPIRE and LOGIN-DELAY with the
// argument USER before login, meaning that the value varies per user and
// is given by CAPA once the user is known (sections 6.7 and 6.5).
func (s *session) recapa() bool {
	for _, name := range []string{"EXPIRE", "LOGIN-DELAY"} {
		if args := s.caps[name]; len(args) > 1 && strings.EqualFold(args[1], "USER") {
			return true
		}
	}
	return false
}

// learnCaps takes the LOGIN-DELAY and EXPIRE policies from s.caps.
func (s *session) learnCaps() {
	if d := s.caps["LOGIN-DELAY"]; len(d) > 0 {
		if secs, err := strconv.Atoi(d[0]); err == nil && secs > 0 {
			// Bounded: a server could name a delay that overflows a
			// time, or that stops an account for years.
			s.stats.LoginDelay = min(time.Duration(min(secs, int(maxLoginDelay/time.Second)))*time.Second, maxLoginDelay)
		}
	}
	if e := s.caps["EXPIRE"]; len(e) > 0 {
		s.expire = e[0]
	}
}

// warnExpire warns, once per Memo, that the server deletes retrieved mail
// whatever keep says: EXPIRE 0 means it does not let mail stay on the
// server once it has been retrieved (RFC 2449 section 6.7).
func (s *session) warnExpire() {
	if !s.acct.Keep || s.expire != "0" || !s.memo.firstTime("expire0") {
		return
	}
	s.log.Warn("keep = true, but the server says (EXPIRE 0) that it deletes every message once it has been retrieved: fetched mail will not stay on the server")
}

// needSizes reports whether new messages must be judged by size
// (size_limit, delete_larger_than).
func (s *session) needSizes() bool {
	return s.sizes || s.acct.SizeLimit > 0 || s.acct.DeleteLargerThan > 0
}

// statReply is STAT's answer: the message count and the maildrop's size.
type statReply struct {
	count int
	size  int64
	ok    bool // STAT was asked and answered
}

// wantStat reports whether STAT should go with the listing.
func (s *session) wantStat() bool {
	return s.pipelining() || s.sc.allowed
}

// needSizesAtOnce reports whether LIST should go out with UIDL: when the
// server pipelines (it costs no round trip) and sizes are needed.
func (s *session) needSizesAtOnce() bool {
	return s.needSizes() && s.pipelining()
}

// list returns the messages on the server with their UIDs (if the server
// has UIDL), whether they were delivered before, and their sizes where
// needed. UIDL alone answers a poll that finds nothing new; LIST is asked
// for only without UIDL, or when size_limit must judge new messages. UIDL
// is sent unless the server lists capabilities without it: CAPA names
// what the server supports (RFC 2449 section 6.8), and some servers hang
// up on a command they do not know. A server without CAPA is asked. With
// PIPELINING the commands go out at once, CAPA with them when the
// capabilities must be asked for again after login (see recapa).
func (s *session) list(ctx context.Context) ([]message, bool, error) {
	needSizes := s.needSizes()
	uidl := s.caps == nil || s.caps.Has("UIDL")
	if s.sc.trusted && uidl && !s.recapa() {
		msgs, ok, err := s.probe(ctx)
		if err != nil {
			return nil, false, err
		}
		if ok {
			if s.lister != nil {
				if err := s.listerDone(); err != nil {
					return nil, false, err
				}
			}
			return msgs, true, nil
		}
		s.lister = nil
	}
	// STAT goes with the listing when it costs no round trip (its count
	// sizes what the lister keeps) or when the shortcut needs it.
	req := pop3.ListRequest{Capa: s.recapa(), Stat: uidl && s.wantStat(), UIDL: uidl, List: !uidl || s.needSizesAtOnce()}
	if uidl {
		s.lister = s.newLister()
		req.OnStat = s.lister.expect
		req.OnUID = s.lister.add
		if req.List {
			req.OnSize = func(sz pop3.MessageSize) error {
				s.lister.finish() // its failure is the listing's, below
				s.lister.setSize(sz)
				return nil
			}
		}
	}
	l, err := s.c.ListAll(ctx, req, s.pipelining())
	if err != nil {
		return nil, false, err
	}
	if s.lister != nil && l.UIDLErr == nil {
		l.UIDLErr = s.lister.finish()
	}
	if !uidl {
		l.UIDLErr = errNoUIDL
	}
	if l.Caps != nil {
		s.caps = l.Caps
		s.learnCaps()
	}
	s.stat = statReply{count: l.Count, size: l.Size, ok: req.Stat && l.StatErr == nil}
	uidlErr, sizes, listErr := l.UIDLErr, l.Sizes, l.ListErr
	var perr *pop3.Error
	if uidlErr != nil && uidlErr != errNoUIDL && (!errors.As(uidlErr, &perr) || s.caps.Has("UIDL") || perr.Code != "") {
		// Not "unsupported": refused by a server that advertises UIDL,
		// or with a response code, or a malformed listing.
		return nil, false, uidlErr
	}
	hasUIDL := uidlErr == nil
	var msgs []message
	if hasUIDL {
		msgs = s.lister.msgs
		s.stats.Messages = s.lister.count
		if err := s.listerDone(); err != nil {
			return nil, false, err
		}
		s.listed()
	}
	// LIST went out with UIDL if it was sure to be needed (its sizes went
	// to the lister); otherwise ask for it now, if it is needed at all.
	streamed := req.List && uidl
	switch {
	case listErr != nil:
	case hasUIDL && !req.List && needSizes && (anyNew(msgs) || s.acct.FetchAll || s.sizes):
		l, err := s.c.ListAll(ctx, pop3.ListRequest{List: true, OnSize: func(sz pop3.MessageSize) error {
			s.lister.setSize(sz)
			return nil
		}}, false)
		if err != nil {
			return nil, false, err
		}
		listErr = l.ListErr
	case !hasUIDL && (!req.List || streamed):
		sizes, listErr = s.c.List(ctx)
	}
	if listErr != nil {
		return nil, false, listErr
	}
	if !hasUIDL {
		// Without UIDs the numbers are all there is to go by: one listed
		// twice would be fetched, delivered and deleted twice (the lister
		// refuses it in a UIDL listing).
		listed := make(map[int]bool, len(sizes))
		msgs = make([]message, 0, len(sizes))
		for _, sz := range sizes {
			if listed[sz.Number] {
				return nil, false, &pop3.ProtocolError{Op: "LIST", Msg: fmt.Sprintf("message %d listed twice", sz.Number)}
			}
			listed[sz.Number] = true
			msgs = append(msgs, message{num: sz.Number, size: sz.Size, sizeKnown: true})
		}
		s.stats.Messages = len(msgs)
	}
	return msgs, hasUIDL, nil
}

// listerDone warns of what the lister found, and stores the UIDs it found
// under their raw forms under their canonical ones.
func (s *session) listerDone() error {
	s.warnEscaped()
	if n := s.lister.deferred; n > 0 {
		s.log.Warn(fmt.Sprintf("the listing's UIDs run past %d MiB: %s for the next poll", maxKeptUIDBytes>>20, plural.Count(n, "message waits", "messages wait")))
	}
	return s.store.Rename(s.acct.Key(), s.lister.rekey)
}

// warnEscaped warns, once per Memo, that the server's UIDs hold what RFC
// 1939 does not allow, and how popfetch keeps them (pop3.CanonicalUID).
func (s *session) warnEscaped() {
	n, example := s.lister.escaped, s.lister.example
	if n > 0 && s.memo.firstTime("escaped-uids") {
		s.log.Warn(fmt.Sprintf("the server's UIDs of %s hold characters RFC 1939 does not allow (spaces, controls, non-ASCII); popfetch keeps them escaped, as in %q", plural.Count(n, "message", "messages"), example))
	}
}

// shortUID cuts a UID for a message.
func shortUID(uid string) string {
	if len(uid) > 70 {
		return uid[:70] + "..."
	}
	return uid
}

func anyNew(msgs []message) bool {
	for _, m := range msgs {
		if !m.seen {
			return true
		}
	}
	return false
}

// prune forgets the UIDs of messages no longer on the server. When the
// store holds no more UIDs than the listing found recorded there is nothing
// to forget, and the common case costs one count.
func (s *session) prune() error {
	recorded := s.lister.seen
	stored, err := s.store.Count(s.acct.Key())
	if err != nil || stored <= recorded+s.stats.Delivered {
		return err
	}
	n, err := s.store.PruneExcept(s.acct.Key(), s.lister.present)
	if n > 0 {
		s.log.Debug("forgot UIDs no longer on the server", "count", n)
	}
	return err
}

// plan splits the messages into those to fetch (new, within size_limit
// and fetch_limit; with fetch_all, the others too) and those to delete
// without fetching: delivered before, unless the account keeps mail or
// they are younger than delete_after; or new and larger than
// delete_larger_than. It consumes msgs: toFetch is built in its array.
func (s *session) plan(msgs []message) (toFetch, toDelete []message) {
	a := s.acct
	now := time.Now()
	// toFetch takes msgs' array, which it never outruns: the listing is
	// not copied (at 72 octets a message, 144 KB for 2000 new ones).
	toFetch = msgs[:0]
	for _, m := range msgs {
		if n, ok := s.memo.knownSize(m.uid); ok && !m.seen && n > m.size {
			// An earlier poll found it larger than listed (see tooLarge).
			m.size, m.sizeKnown = n, true
		}
		switch {
		case m.seen && !a.FetchAll:
			switch {
			case !a.Keep:
				toDelete = append(toDelete, m)
			case a.DeleteAfter > 0 && now.Sub(m.first) >= a.DeleteAfter:
				toDelete = append(toDelete, m)
				s.stats.Expired++
				s.log.Debug("deleting a message older than delete_after", "uid", m.uid, "number", m.num,
					"first_delivered", m.first.Format(time.DateOnly))
			}
		case m.deferred:
			s.stats.New++
			s.stats.LimitReached = true
		case !m.seen && a.DeleteLargerThan > 0 && m.sizeKnown && m.size > a.DeleteLargerThan:
			s.stats.New++
			s.stats.Discarded++
			toDelete = append(toDelete, m)
			s.log.Info("deleting a message larger than delete_larger_than without fetching it",
				"uid", m.uid, "number", m.num, "size", m.size, "delete_larger_than", a.DeleteLargerThan)
		case a.SizeLimit > 0 && m.sizeKnown && m.size > a.SizeLimit:
			s.stats.New++
			s.stats.Skipped++
			s.log.Info("message larger than size_limit left on the server",
				"uid", m.uid, "number", m.num, "size", m.size, "size_limit", a.SizeLimit)
		case a.FetchLimit > 0 && len(toFetch) >= a.FetchLimit:
			s.stats.New++
			s.stats.LimitReached = true
		default:
			s.stats.New++
			toFetch = append(toFetch, m)
		}
	}
	return toFetch, toDelete
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

// sourceReader streams a message into a deliverer: it bounds it (limit),
// notes whether it was read to its end (the deliverer must), and keeps
// its start for the log line when head is set. A failure of the stream
// comes back from the deliverer unwrapped (deliver.Deliverer), so it is
// not remembered here.
type sourceReader struct {
	r     io.Reader
	eof   bool
	head  *bytes.Buffer
	limit int64 // 0: none; past it Read fails with errTooLarge
	n     int64 // octets read
	over  bool  // the limit was passed
}

// errTooLarge is sourceReader's error past its limit.
var errTooLarge = errors.New("message larger than the limit")

const maxHead = 16 << 10

func (r *sourceReader) Read(p []byte) (int, error) {
	if r.over {
		return 0, errTooLarge
	}
	n, err := r.r.Read(p)
	r.n += int64(n)
	if r.limit > 0 && r.n > r.limit {
		r.over = true
		return 0, errTooLarge
	}
	if r.head != nil && r.head.Len() < maxHead {
		r.head.Write(p[:min(n, maxHead-r.head.Len())])
	}
	if err == io.EOF {
		r.eof = true
	}
	return n, err
}

// subject returns the decoded Subject of a message header, "" if none.
func subject(head []byte) string {
	return decodeHeader(headerFields(bytes.NewReader(head))["subject"])
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
