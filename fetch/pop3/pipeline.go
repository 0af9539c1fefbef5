package pop3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// Command is a command sent through a Pipeline.
type Command struct {
	Verb string // "RETR", "TOP", "DELE", "NOOP", "RSET" or "QUIT" (the last)
	Msg  int    // the message number; 0 for NOOP and RSET
}

// Reply is the reply to one pipelined command.
type Reply struct {
	Command Command
	// Err is the -ERR reply, or nil for +OK.
	Err *Error
	// Body streams the message of a RETR or TOP answered +OK. It must be
	// read to its end or closed before the next call to Next.
	Body *MessageReader
}

// Pipeline sends commands ahead of their replies (RFC 2449 PIPELINING):
// one goroutine calls Send, Flush and CloseSend while another calls Next,
// which returns the replies strictly in the order the commands were sent.
// At most window commands await their replies; Send waits for a free
// place, and flushes what it has written before it waits, so that neither
// side can block the other for good. With a window of 1 a Pipeline is the
// plain request/response protocol of a server without PIPELINING.
//
// While a Pipeline is in use the Client's other methods are refused.
type Pipeline struct {
	c     *Client
	stop  func()
	slots chan struct{} // a token for each command awaiting its reply
	sent  chan Command  // the commands awaiting replies, oldest first
	dead  chan struct{} // closed by the first failure

	wmu    sync.Mutex // the writer's side
	closed bool
	quit   bool // QUIT was sent: it is the last command

	emu sync.Mutex
	err error
}

// Pipeline starts pipelining on the connection, governed by ctx until End.
func (c *Client) Pipeline(ctx context.Context, window int) (*Pipeline, error) {
	if c.broken != nil {
		return nil, c.broken
	}
	if c.open != nil || c.pipe != nil {
		return nil, errors.New("pop3: pipeline while another command is in progress")
	}
	window = max(window, 1)
	p := &Pipeline{
		c:     c,
		stop:  c.tc.watch(ctx),
		slots: make(chan struct{}, window),
		sent:  make(chan Command, window),
		dead:  make(chan struct{}),
	}
	c.pipe = p
	return p, nil
}

// Abort gives up the replies still to come: it closes the connection, and
// Send and Next return ErrClosed (or the failure before it). It may be
// called from any goroutine.
func (p *Pipeline) Abort() {
	p.fail(ErrClosed)
	p.c.conn.Close()
}

// fail records the first failure and wakes both sides.
func (p *Pipeline) fail(err error) error {
	p.emu.Lock()
	defer p.emu.Unlock()
	if p.err == nil {
		p.err = err
		close(p.dead)
	}
	return p.err
}

func (p *Pipeline) failed() error {
	p.emu.Lock()
	defer p.emu.Unlock()
	return p.err
}

// Send writes a command. It waits while the window is full.
func (p *Pipeline) Send(cmd Command) error {
	switch cmd.Verb {
	case "RETR", "TOP", "DELE", "NOOP", "RSET", "QUIT":
	default:
		return fmt.Errorf("pop3: %s cannot be pipelined here", cmd.Verb)
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.closed {
		return errors.New("pop3: Send after CloseSend")
	}
	if err := p.failed(); err != nil {
		return err
	}
	select {
	case p.slots <- struct{}{}:
	default:
		// The window is full: let the server see what is written before
		// waiting for its replies to free a place.
		if err := p.flushLocked(); err != nil {
			return err
		}
		select {
		case p.slots <- struct{}{}:
		case <-p.dead:
			return p.failed()
		}
	}
	line := cmd.Verb
	if cmd.Verb == "TOP" {
		line += " " + strconv.Itoa(cmd.Msg) + " 0"
	} else if cmd.Msg > 0 {
		line += " " + strconv.Itoa(cmd.Msg)
	}
	p.c.tracef("C: %s", line)
	p.c.w.WriteString(line)
	p.c.w.WriteString("\r\n")
	p.sent <- cmd // never blocks: a slot was taken, and sent is as large as slots
	if cmd.Verb == "QUIT" {
		p.quit = true
		p.closed = true
		err := p.flushLocked()
		close(p.sent)
		return err
	}
	return nil
}

// Flush sends what Send has written. Call it before waiting for anything
// but the replies themselves.
func (p *Pipeline) Flush() error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.flushLocked()
}

func (p *Pipeline) flushLocked() error {
	if err := p.failed(); err != nil {
		return err
	}
	if err := p.c.w.Flush(); err != nil {
		return p.fail(p.c.sendErr("pipelined commands", err))
	}
	return nil
}

// CloseSend flushes and says that no more commands will be sent: Next
// returns io.EOF once their replies are read.
func (p *Pipeline) CloseSend() error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	err := p.flushLocked()
	close(p.sent)
	return err
}

// Next returns the reply to the oldest command not yet answered, waiting
// for it to be sent if need be. It returns io.EOF after CloseSend once
// every reply was read, and the first failure of either side otherwise.
func (p *Pipeline) Next() (Reply, error) {
	if err := p.failed(); err != nil {
		return Reply{}, err
	}
	var cmd Command
	select {
	case c, ok := <-p.sent:
		if !ok {
			return Reply{}, io.EOF
		}
		cmd = c
	case <-p.dead:
		return Reply{}, p.failed()
	}
	c := p.c
	arg := ""
	if cmd.Msg > 0 {
		arg = strconv.Itoa(cmd.Msg)
	}
	if _, err := c.readStatus(cmd.Verb, arg); err != nil {
		var perr *Error
		if errors.As(err, &perr) {
			<-p.slots
			return Reply{Command: cmd, Err: perr}, nil
		}
		return Reply{}, p.fail(err)
	}
	if cmd.Verb != "RETR" && cmd.Verb != "TOP" {
		<-p.slots
		return Reply{Command: cmd}, nil
	}
	c.tc.readingBody(true)
	if cmd.Verb == "TOP" {
		arg += " 0"
	}
	m := &MessageReader{c: c, dr: newDotReader(c.r), verb: cmd.Verb, arg: arg}
	m.done = func(err error) {
		<-p.slots
		if err != io.EOF {
			p.fail(err)
		}
	}
	return Reply{Command: cmd, Body: m}, nil
}

// End leaves pipelining. Every reply must have been read; it returns the
// pipeline's first failure, after which the client is broken. After a
// pipelined QUIT the connection is closed.
func (p *Pipeline) End() error {
	p.CloseSend()
	p.stop()
	p.c.pipe = nil
	if p.quit {
		p.c.conn.Close()
		if p.c.broken == nil {
			p.c.broken = ErrClosed
		}
	}
	if err := p.failed(); err != nil {
		p.c.broken = err
		return err
	}
	if len(p.slots) > 0 {
		err := errors.New("pop3: pipeline ended with replies unread")
		p.c.broken = err
		return err
	}
	return nil
}

// Login sends USER and then PASS. With pipelined (the server advertised
// PIPELINING) both go out in one write and the server answers them in
// order; nothing is ever sent behind PASS, because a server may hand the
// connection to another process once the login succeeds and drop what
// was already sent (Courier's pop3login does). The password never
// appears in the trace.
func (c *Client) Login(ctx context.Context, user, password string, pipelined bool) error {
	if !pipelined {
		if err := c.User(ctx, user); err != nil {
			return err
		}
		return c.Pass(ctx, password)
	}
	errs, err := c.batch(ctx, []request{{verb: "USER", arg: user}, {verb: "PASS", arg: password}}, true)
	if err != nil {
		return err
	}
	if errs[0] != nil {
		return errs[0] // a refused USER: PASS's -ERR says no more
	}
	return errs[1]
}

// ListRequest says what ListAll asks for.
type ListRequest struct {
	// Capa asks for the capabilities again: after login they may differ
	// (RFC 2449 section 5), and the per-user values of EXPIRE and
	// LOGIN-DELAY are known only then (sections 6.7, 6.5).
	Capa bool
	// Stat asks for the message count and the maildrop's size, before
	// the listings: a caller can size what it keeps by the count.
	Stat bool
	UIDL bool
	List bool
	// OnStat, if set, is given STAT's answer as soon as it is read, before
	// the listings that follow it.
	OnStat func(count int, size int64)
	// OnUID, if set, is given each line of the UIDL listing as it is
	// read, instead of Listing.UIDs holding them all; an error from it
	// is the listing's error (UIDLErr), and the rest of the listing is
	// read without being kept.
	OnUID func(MessageUID) error
	// OnSize does for LIST what OnUID does for UIDL (Listing.Sizes then
	// stays nil).
	OnSize func(MessageSize) error
}

// Listing is the answer to a ListRequest.
type Listing struct {
	Caps    Capabilities // nil if not asked for, or refused (CapaErr)
	CapaErr error
	Count   int // STAT's, if asked for and StatErr is nil
	Size    int64
	StatErr error
	UIDs    []MessageUID
	UIDLErr error // the -ERR to UIDL, or its malformed listing; UIDs is nil then
	Sizes   []MessageSize
	ListErr error // likewise for LIST
}

// ListAll asks for what req names, in the order CAPA, STAT, UIDL, LIST.
// With pipelined the commands go out in one write. A -ERR or a malformed
// listing is reported in the Listing; err is a failure of the connection.
func (c *Client) ListAll(ctx context.Context, req ListRequest, pipelined bool) (Listing, error) {
	var l Listing
	var reqs []request
	var errp []*error
	caps := Capabilities{}
	if req.Capa {
		reqs = append(reqs, request{verb: "CAPA", lines: func(line string) error { caps.add(line); return nil }})
		errp = append(errp, &l.CapaErr)
	}
	if req.Stat {
		reqs = append(reqs, request{verb: "STAT", status: func(text string) error {
			n, size, err := parseStat(text)
			l.Count, l.Size = n, size
			if err == nil && req.OnStat != nil {
				req.OnStat(n, size)
			}
			return err
		}})
		errp = append(errp, &l.StatErr)
	}
	if req.UIDL {
		r := request{verb: "UIDL"}
		if req.OnUID != nil {
			r.lines = uidHandler(req.OnUID)
		} else {
			r.lines = uidParser(&l.UIDs)
		}
		reqs = append(reqs, r)
		errp = append(errp, &l.UIDLErr)
	}
	if req.List {
		onSize := req.OnSize
		if onSize == nil {
			onSize = func(m MessageSize) error { l.Sizes = append(l.Sizes, m); return nil }
		}
		reqs = append(reqs, request{verb: "LIST", lines: func(line string) error {
			m, err := parseListLine(line)
			if err != nil {
				return err
			}
			return onSize(m)
		}})
		errp = append(errp, &l.ListErr)
	}
	errs, err := c.batch(ctx, reqs, pipelined)
	if err != nil {
		return Listing{}, err
	}
	for i, e := range errs {
		*errp[i] = e
	}
	if req.Capa && l.CapaErr == nil {
		l.Caps = caps
		c.caps = caps
	}
	if l.StatErr != nil {
		l.Count, l.Size = 0, 0
	}
	if l.UIDLErr != nil {
		l.UIDs = nil
	}
	if l.ListErr != nil {
		l.Sizes = nil
	}
	return l, nil
}

// ProbeRequest says what Probe asks for: STAT, then UIDL n for each of
// UIDs, then LIST n for each of Sizes.
type ProbeRequest struct {
	UIDs  []int
	Sizes []int
}

// Probed is the answer to a ProbeRequest. Each UID and size comes with its
// own error: the -ERR to its command (an *Error, "no such message" for
// one that does not exist) or a malformed reply (a *ProtocolError).
type Probed struct {
	Count    int
	Size     int64
	StatErr  error
	UIDs     []MessageUID // in the order asked for
	UIDErrs  []error
	Sizes    []MessageSize
	SizeErrs []error
}

// Probe asks, with pipelined in one write, for the message count and size
// (STAT) and for single messages' UIDs and sizes (UIDL n, LIST n): what a
// client needs to tell whether a maildrop it listed before has changed
// without listing it again. err is a failure of the connection only.
func (c *Client) Probe(ctx context.Context, req ProbeRequest, pipelined bool) (Probed, error) {
	p := Probed{UIDs: make([]MessageUID, len(req.UIDs)), UIDErrs: make([]error, len(req.UIDs)),
		Sizes: make([]MessageSize, len(req.Sizes)), SizeErrs: make([]error, len(req.Sizes))}
	reqs := make([]request, 0, 1+len(req.UIDs)+len(req.Sizes))
	reqs = append(reqs, request{verb: "STAT", status: func(text string) error {
		var err error
		p.Count, p.Size, err = parseStat(text)
		return err
	}})
	for i, n := range req.UIDs {
		reqs = append(reqs, request{verb: "UIDL", arg: strconv.Itoa(n), status: func(text string) error {
			m, err := parseUIDLLine(text)
			if err == nil && m.Number != n {
				err = &ProtocolError{Op: "UIDL", Msg: fmt.Sprintf("asked for message %d, got %d", n, m.Number)}
			}
			p.UIDs[i] = m
			return err
		}})
	}
	for i, n := range req.Sizes {
		reqs = append(reqs, request{verb: "LIST", arg: strconv.Itoa(n), status: func(text string) error {
			m, err := parseListLine(text)
			if err == nil && m.Number != n {
				err = &ProtocolError{Op: "LIST", Msg: fmt.Sprintf("asked for message %d, got %d", n, m.Number)}
			}
			p.Sizes[i] = m
			return err
		}})
	}
	errs, err := c.batch(ctx, reqs, pipelined)
	if err != nil {
		return Probed{}, err
	}
	p.StatErr = errs[0]
	copy(p.UIDErrs, errs[1:])
	copy(p.SizeErrs, errs[1+len(req.UIDs):])
	if p.StatErr != nil {
		p.Count, p.Size = 0, 0
	}
	for i, e := range p.UIDErrs {
		if e != nil {
			p.UIDs[i] = MessageUID{}
		}
	}
	for i, e := range p.SizeErrs {
		if e != nil {
			p.Sizes[i] = MessageSize{}
		}
	}
	return p, nil
}

func isReply(err error) bool {
	var perr *Error
	var proto *ProtocolError
	return errors.As(err, &perr) || errors.As(err, &proto)
}

// request is one command of a batch.
type request struct {
	verb, arg string
	// status, if set, is given the text after +OK; its error is the
	// command's (the connection stays usable: the line was read whole).
	status func(text string) error
	// lines, if set, makes the reply a multi-line listing, each line
	// given to it.
	lines func(string) error
}

// batch sends several commands and reads their replies in order: with
// pipelined in one write, else one command at a time. It returns each
// command's -ERR, listing error or status error, and err for a broken
// connection.
func (c *Client) batch(ctx context.Context, reqs []request, pipelined bool) ([]error, error) {
	if c.broken != nil {
		return nil, c.broken
	}
	if c.open != nil || c.pipe != nil {
		return nil, errors.New("pop3: commands while another is in progress")
	}
	for _, r := range reqs {
		if strings.ContainsAny(r.arg, "\r\n\x00") {
			return nil, ErrBadArgument
		}
	}
	stop := c.tc.watch(ctx)
	defer stop()
	send := func(r request) error {
		line := r.verb
		if r.arg != "" {
			line += " " + r.arg
		}
		c.tracef("C: %s", redact(r.verb, r.arg))
		c.w.WriteString(line)
		c.w.WriteString("\r\n")
		return nil
	}
	flush := func(verb string) error {
		if err := c.w.Flush(); err != nil {
			c.broken = err
			return c.sendErr(verb, err)
		}
		return nil
	}
	if pipelined && len(reqs) > 0 {
		for _, r := range reqs {
			send(r)
		}
		if err := flush(reqs[0].verb); err != nil {
			return nil, err
		}
	}
	errs := make([]error, len(reqs))
	for i, r := range reqs {
		if !pipelined {
			send(r)
			if err := flush(r.verb); err != nil {
				return nil, err
			}
		}
		if pipelined && i > 0 && c.r.Buffered() == 0 {
			// The reply before is read and this one has not come: the
			// ACK of the one before must not wait (ackNow).
			ackNow(c.tc.Conn)
		}
		text, err := c.readStatus(r.verb, r.arg)
		if err == nil && r.status != nil {
			err = r.status(text)
		}
		if err == nil && r.lines != nil {
			err = c.readListing(r.verb, r.lines)
		}
		if err != nil {
			if !isReply(err) || c.broken != nil {
				return nil, err
			}
			errs[i] = err
		}
	}
	return errs, nil
}
