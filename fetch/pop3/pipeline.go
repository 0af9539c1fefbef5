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
		return p.fail(p.c.netErr("pipeline", err))
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
	if _, err := c.readStatus(cmd.Verb); err != nil {
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
	m := &MessageReader{c: c, dr: newDotReader(c.r)}
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
	errs, err := c.batch(ctx, [][2]string{{"USER", user}, {"PASS", password}}, nil)
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
	UIDL bool
	List bool
	// OnUID, if set, is given each line of the UIDL listing as it is
	// read, instead of Listing.UIDs holding them all; an error from it
	// is the listing's error (UIDLErr), and the rest of the listing is
	// read without being kept.
	OnUID func(MessageUID) error
}

// Listing is the answer to a ListRequest.
type Listing struct {
	Caps    Capabilities // nil if not asked for, or refused (CapaErr)
	CapaErr error
	UIDs    []MessageUID
	UIDLErr error // the -ERR to UIDL, or its malformed listing; UIDs is nil then
	Sizes   []MessageSize
	ListErr error // likewise for LIST
}

// ListAll asks for what req names, in the order CAPA, UIDL, LIST. With
// pipelined the commands go out in one write. A -ERR or a malformed
// listing is reported in the Listing; err is a failure of the connection.
func (c *Client) ListAll(ctx context.Context, req ListRequest, pipelined bool) (Listing, error) {
	var l Listing
	var cmds [][2]string
	var parsers []func(string) error
	var errp []*error
	caps := Capabilities{}
	if req.Capa {
		cmds = append(cmds, [2]string{"CAPA", ""})
		parsers = append(parsers, func(line string) error { caps.add(line); return nil })
		errp = append(errp, &l.CapaErr)
	}
	if req.UIDL {
		cmds = append(cmds, [2]string{"UIDL", ""})
		if req.OnUID != nil {
			parsers = append(parsers, uidHandler(req.OnUID))
		} else {
			parsers = append(parsers, uidParser(&l.UIDs))
		}
		errp = append(errp, &l.UIDLErr)
	}
	if req.List {
		cmds = append(cmds, [2]string{"LIST", ""})
		parsers = append(parsers, func(line string) error {
			m, err := parseListLine(line)
			l.Sizes = append(l.Sizes, m)
			return err
		})
		errp = append(errp, &l.ListErr)
	}
	if pipelined {
		errs, err := c.batch(ctx, cmds, parsers)
		if err != nil {
			return Listing{}, err
		}
		for i, e := range errs {
			*errp[i] = e
		}
	} else {
		for i, cmd := range cmds {
			if err := c.listing(ctx, cmd[0], "", parsers[i]); err != nil {
				if !isReply(err) || c.broken != nil {
					return Listing{}, err
				}
				*errp[i] = err
			}
		}
	}
	if req.Capa && l.CapaErr == nil {
		l.Caps = caps
		c.caps = caps
	}
	if l.UIDLErr != nil {
		l.UIDs = nil
	}
	if l.ListErr != nil {
		l.Sizes = nil
	}
	return l, nil
}

func isReply(err error) bool {
	var perr *Error
	var proto *ProtocolError
	return errors.As(err, &perr) || errors.As(err, &proto)
}

// batch writes several commands at once and reads their replies in order.
// parsers, if given, has one entry per command: nil for a single-line
// reply, else the line handler of a multi-line listing. It returns each
// command's -ERR or listing error, and err for a broken connection.
func (c *Client) batch(ctx context.Context, cmds [][2]string, parsers []func(string) error) ([]error, error) {
	if c.broken != nil {
		return nil, c.broken
	}
	if c.open != nil || c.pipe != nil {
		return nil, errors.New("pop3: commands while another is in progress")
	}
	for _, cmd := range cmds {
		if strings.ContainsAny(cmd[1], "\r\n\x00") {
			return nil, ErrBadArgument
		}
	}
	stop := c.tc.watch(ctx)
	defer stop()
	for _, cmd := range cmds {
		line := cmd[0]
		if cmd[1] != "" {
			line += " " + cmd[1]
		}
		c.tracef("C: %s", redact(cmd[0], cmd[1]))
		c.w.WriteString(line)
		c.w.WriteString("\r\n")
	}
	if err := c.w.Flush(); err != nil {
		c.broken = err
		return nil, c.netErr(cmds[0][0], err)
	}
	errs := make([]error, len(cmds))
	for i, cmd := range cmds {
		if _, err := c.readStatus(cmd[0]); err != nil {
			if !isReply(err) || c.broken != nil {
				return nil, err
			}
			errs[i] = err
			continue
		}
		if parsers != nil && parsers[i] != nil {
			if err := c.readListing(cmd[0], parsers[i]); err != nil {
				if !isReply(err) || c.broken != nil {
					return nil, err
				}
				errs[i] = err
			}
		}
	}
	return errs, nil
}
