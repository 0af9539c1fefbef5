package main

// The daemon's control socket (STATE/daemon.sock): "popfetch status" asks
// it for the status, "popfetch --quit" asks it to stop, and a plain
// "popfetch" asks it to poll now and tell the result. A client writes one
// request, a JSON object on one line; the daemon answers with one JSON
// document and closes the connection. A client that writes nothing (an
// older popfetch) gets the status.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/popfetch/popfetch/config"
	"github.com/popfetch/popfetch/fetch"
)

// Requests (controlRequest.Op).
const (
	opStatus = "status"
	opQuit   = "quit"
	opPoll   = "poll"
)

// Bounds of the control protocol.
const (
	maxRequest      = 4 << 10          // bytes of one request line
	requestWait     = 2 * time.Second  // for the request, after connecting
	maxControlConns = 32               // connections served at once
	dialWait        = 5 * time.Second  // to connect
	quitReplyWait   = 5 * time.Second  // for the daemon to take a quit
	quitWait        = 20 * time.Second // for it to end after that (it ends within 10 s)
	maxReply        = 64 << 20         // bytes of a reply (the status of 10,000 accounts is a few MiB)
	// wakeTimeout bounds the wait for the polls a wake asked for; the
	// accounts whose poll has not ended by then are reported as such.
	wakeTimeout = 10 * time.Minute
)

// controlRequest is what a client asks the daemon.
type controlRequest struct {
	Op string `json:"op"`
	// Config is the configuration file of the client asking for a poll:
	// the daemon polls for it only if it reads the same file.
	Config string `json:"config,omitempty"`
}

// controlReply is the daemon's answer to a quit or poll request (a
// status request is answered with the status document).
type controlReply struct {
	Reply string `json:"reply"` // the request's op, or "error"
	Error string `json:"error,omitempty"`
	PID   int    `json:"pid,omitempty"`
	// Poll: Refused says why the daemon did not poll (another
	// configuration file); Accounts are all the accounts the daemon
	// polls; Polled the outcome of each poll that started after the
	// request; NotPolled the accounts it could not poll now, and why.
	Refused   string        `json:"refused,omitempty"`
	Accounts  []string      `json:"accounts,omitempty"`
	Polled    []pollOutcome `json:"polled,omitempty"`
	NotPolled []notPolled   `json:"not_polled,omitempty"`
}

// pollOutcome is the end of one poll, as a one-shot run reports it.
type pollOutcome struct {
	Name    string `json:"name"`
	Code    int    `json:"code"` // the exit code a one-shot poll would have had
	Summary string `json:"summary,omitempty"`
	Error   string `json:"error,omitempty"`
}

// notPolled is an account a wake did not poll, and why, with the exit
// code that stands for it in the run's combined code: a run that wakes
// the daemon must not exit 1 ("no new mail") while an account is held
// back or stuck.
type notPolled struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
	Code   int    `json:"code"`
}

// outcomeOf turns a poll's result into its outcome.
func outcomeOf(name string, st fetch.Stats, err error) pollOutcome {
	o := pollOutcome{Name: name, Code: pollCode(st, err), Summary: summarize(st)}
	if err != nil {
		o.Error = err.Error()
		var fe *fetch.Error
		if errors.As(err, &fe) {
			o.Error = fe.Kind.String() + ": " + fe.Err.Error()
		}
	}
	return o
}

// pollCode is the exit code of one poll of one account.
func pollCode(st fetch.Stats, err error) int {
	switch {
	case err != nil && st.Delivered > 0:
		return exitMail
	case err != nil:
		return exitCodeOf(err)
	case st.LimitReached:
		return exitFetchLimit
	case st.Delivered > 0:
		return exitMail
	}
	return exitNoMail
}

// readRequest reads a client's request; a client that sends nothing
// within requestWait asks for the status.
func readRequest(conn net.Conn) (controlRequest, error) {
	conn.SetReadDeadline(time.Now().Add(requestWait))
	br := bufio.NewReader(io.LimitReader(conn, maxRequest))
	line, err := br.ReadBytes('\n')
	conn.SetReadDeadline(time.Time{})
	var req controlRequest
	if len(line) == 0 {
		return controlRequest{Op: opStatus}, nil
	}
	if err != nil {
		return req, errors.New("the request is not one line of at most 4 KiB")
	}
	if err := json.Unmarshal(line, &req); err != nil {
		return req, fmt.Errorf("the request is not JSON: %w", err)
	}
	switch req.Op {
	case opStatus, opQuit, opPoll:
		return req, nil
	case "":
		req.Op = opStatus
		return req, nil
	}
	return req, fmt.Errorf("unknown request %.40q", req.Op)
}

// askControl sends req to the daemon of stateDir and returns its answer,
// giving up after wait (and when stop is closed, if it is not nil).
func askControl(stateDir string, req controlRequest, wait time.Duration, stop <-chan struct{}) ([]byte, error) {
	conn, err := net.DialTimeout("unix", socketPath(stateDir), dialWait)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if !peerAllowed(conn) {
		// Another user's process listens there (a state directory open
		// to others): its answers would decide whether this run polls,
		// and what it reports.
		return nil, fmt.Errorf("%s: %w", socketPath(stateDir), errNotOurs)
	}
	conn.SetDeadline(time.Now().Add(wait))
	if stop != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-stop:
				conn.SetDeadline(time.Now()) // unblocks the read
			case <-done:
			}
		}()
	}
	line, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(line, '\n')); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(conn, maxReply+1))
	if err == nil && len(data) > maxReply {
		err = errors.New("the daemon's answer is too long")
	}
	return data, err
}

// askReply is askControl for a quit or poll request: an answer that is
// not a reply to op (an older daemon answers every request with its
// status) is errNotUnderstood.
func askReply(stateDir string, req controlRequest, wait time.Duration, stop <-chan struct{}) (controlReply, error) {
	data, err := askControl(stateDir, req, wait, stop)
	if err != nil {
		return controlReply{}, err
	}
	var r controlReply
	if err := json.Unmarshal(data, &r); err != nil || r.Reply == "" {
		return controlReply{}, errNotUnderstood
	}
	if r.Reply == "error" {
		return r, fmt.Errorf("the daemon refused the request: %s", r.Error)
	}
	if r.Reply != req.Op {
		return controlReply{}, errNotUnderstood
	}
	return r, nil
}

// errNotUnderstood: the daemon answered, but not to the request.
var errNotUnderstood = errors.New("the daemon does not know this request")

// errNotOurs: another user listens on the daemon's socket.
var errNotOurs = errors.New("not the daemon's: another user listens on it")

// errNoDaemon is --quit's exit status when no daemon runs.
var errNoDaemon = exitStatus(exitNoMail)

// quitAction stops the daemon of the state directory and waits for it to
// end, as fetchmail --quit does: exit 0 once it has, 1 if none ran.
func quitAction(c *cli.Context) error {
	o := readOptions(c)
	pid, running := daemonRunning(o.stateDir)
	if !running {
		// A socket or PID file left by a daemon that died says nothing:
		// the lock is what a running daemon holds.
		if !o.quiet {
			fmt.Fprintf(c.App.ErrWriter, "popfetch: no daemon is running with state directory %s\n", o.stateDir)
		}
		return errNoDaemon
	}
	r, err := askReply(o.stateDir, controlRequest{Op: opQuit}, quitReplyWait, nil)
	switch {
	case err == nil:
		if r.PID > 0 {
			pid = r.PID
		}
	case pid > 0 && !errors.Is(err, errNotOurs):
		// No answer on the socket (a daemon of an older popfetch, or a
		// state directory whose path is too long for a socket): the
		// PID in the file the daemon holds locked is the daemon's. (Not
		// when another user listens there: the lock may be theirs too.)
		if kerr := syscall.Kill(pid, syscall.SIGTERM); kerr != nil {
			return fmt.Errorf("stopping the daemon (pid %d): %w", pid, kerr)
		}
	default:
		return fmt.Errorf("the daemon with state directory %s did not answer: %w", o.stateDir, err)
	}
	deadline := time.Now().Add(quitWait)
	for {
		if _, running := daemonRunning(o.stateDir); !running {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the daemon (pid %d) is still running %v after it was asked to stop", pid, quitWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !o.quiet {
		fmt.Fprintf(c.App.ErrWriter, "popfetch: the daemon (pid %d) has stopped\n", pid)
	}
	return nil
}

// wakeResult is what a wake of the daemon did for a one-shot run.
type wakeResult struct {
	codes  []int           // of the polls it reported
	polled map[string]bool // the accounts the daemon polls, whether or not it could now
	all    bool            // it polls every account of the configuration
}

// wakeDaemon asks the running daemon, if there is one and the command
// line leaves the poll to it (no account named, no -k, -K or -a, which
// its polls would not honour, no -v, whose lines they would not show,
// the daemon's configuration file), to poll every account now, and reports
// what its polls did. Without a daemon, or one that cannot, it returns an
// empty result and the caller polls itself.
func wakeDaemon(c *cli.Context, p *proc) (wakeResult, error) {
	o := readOptions(c)
	if c.Args().Len() > 0 || o.keep || o.nokeep || o.fetchAll || o.verbosity > 0 {
		return wakeResult{}, nil
	}
	if _, running := daemonRunning(o.stateDir); !running {
		return wakeResult{}, nil
	}
	cfgPath, err := filepath.Abs(o.configPath)
	if err != nil {
		return wakeResult{}, nil
	}
	log, closeLog, err := o.logger(c.App.ErrWriter, false)
	if err != nil {
		return wakeResult{}, err
	}
	defer closeLog()
	r, err := askReply(o.stateDir, controlRequest{Op: opPoll, Config: cfgPath}, wakeTimeout+30*time.Second, p.stop)
	switch {
	case p.stopped():
		return wakeResult{}, exitStatus(exitInterrupted)
	case err != nil:
		log.Debug("the daemon did not poll; polling here once it lets go of the UID store: " + err.Error())
		return wakeResult{}, nil
	case r.Refused != "":
		log.Info("the daemon did not poll (" + r.Refused + "); polling here once it lets go of the UID store")
		return wakeResult{}, nil
	}
	res := wakeResult{polled: map[string]bool{}}
	for _, n := range r.Accounts {
		res.polled[n] = true
	}
	for _, po := range r.Polled {
		alog := log.With("account", po.Name)
		switch {
		case po.Error != "" && po.Code == exitMail:
			alog.Error(po.Error, "after", po.Summary)
		case po.Error != "":
			alog.Error(po.Error)
		default:
			alog.Info(po.Summary)
		}
		res.codes = append(res.codes, po.Code)
	}
	for _, np := range r.NotPolled {
		log.With("account", np.Name).Warn("not polled now: " + np.Reason)
		if np.Code != 0 {
			res.codes = append(res.codes, np.Code)
		}
	}
	cfg, err := loadConfig(o.configPath)
	if err != nil {
		// The daemon polled with the configuration it read before; a
		// run in the foreground would have exited 5. Say so, or the
		// mistake goes unnoticed until the daemon is restarted.
		log.Warn(cfgPath + " has errors (popfetch config check shows them): the daemon polled with the configuration it read before")
		res.all = true // the daemon read it; what it polled is all there is to report
		return res, nil
	}
	all, err := cfg.Select(nil)
	res.all = err != nil || !slices.ContainsFunc(all, func(a config.Account) bool { return !res.polled[a.Name] })
	return res, nil
}

// wakeBoard is what the daemon's wakes wait for: polls that start after
// the wake and end.
type wakeBoard struct {
	mu   sync.Mutex
	reqs []*wakeReq
}

// wakeReq is one wake: the accounts it waits for, and what their polls did.
type wakeReq struct {
	since     time.Time
	want      map[string]bool
	polled    []pollOutcome
	notPolled []notPolled
	done      chan struct{} // closed when want is empty
}

// add starts a wake for the accounts names.
func (b *wakeBoard) add(names []string) *wakeReq {
	r := &wakeReq{since: time.Now(), want: map[string]bool{}, done: make(chan struct{})}
	for _, n := range names {
		r.want[n] = true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(r.want) == 0 {
		close(r.done)
	} else {
		b.reqs = append(b.reqs, r)
	}
	return r
}

// finished records the end of name's poll that started at started.
func (b *wakeBoard) finished(name string, started time.Time, st fetch.Stats, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.reqs) == 0 {
		return // no wake waits: the common case costs a lock
	}
	var o *pollOutcome
	b.reqs = slices.DeleteFunc(b.reqs, func(r *wakeReq) bool {
		if !r.want[name] || started.Before(r.since) {
			return false
		}
		if o == nil {
			x := outcomeOf(name, st, err)
			o = &x
		}
		r.polled = append(r.polled, *o)
		return r.settle(name)
	})
}

// skip gives up on name for r, saying why; code is the exit code that
// stands for it.
func (b *wakeBoard) skip(r *wakeReq, name, reason string, code int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !r.want[name] {
		return
	}
	r.notPolled = append(r.notPolled, notPolled{Name: name, Reason: reason, Code: code})
	if r.settle(name) {
		b.reqs = slices.DeleteFunc(b.reqs, func(x *wakeReq) bool { return x == r })
	}
}

// settle drops name from what r waits for and reports whether r is done.
func (r *wakeReq) settle(name string) bool {
	delete(r.want, name)
	if len(r.want) == 0 {
		close(r.done)
		return true
	}
	return false
}

// end stops r waiting; what it still waits for is reported as not
// polled, for reason, with the exit code code.
func (b *wakeBoard) end(r *wakeReq, reason string, code int) (polled []pollOutcome, skipped []notPolled) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reqs = slices.DeleteFunc(b.reqs, func(x *wakeReq) bool { return x == r })
	left := make([]string, 0, len(r.want))
	for n := range r.want {
		left = append(left, n)
	}
	slices.Sort(left)
	for _, n := range left {
		r.notPolled = append(r.notPolled, notPolled{Name: n, Reason: reason, Code: code})
	}
	r.want = nil
	return r.polled, r.notPolled
}

// sameFile reports whether the paths a and b name one file.
func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// wake polls every account now, for a one-shot popfetch that reads the
// configuration file clientConfig, and returns what the polls did once
// all have ended (or wakeTimeout has passed, or ctx ends). A poll running
// when the wake comes does not count: the account polls again after it,
// to see mail that arrived meanwhile. Accounts the server's LOGIN-DELAY
// keeps from polling now are reported, not waited for.
func (d *daemon) wake(ctx context.Context, clientConfig string) controlReply {
	r := controlReply{Reply: opPoll}
	if !sameFile(clientConfig, d.opts.configPath) {
		r.Refused = "it reads the configuration file " + d.opts.configPath
		return r
	}
	jobs := d.sched.Status()
	for _, j := range jobs {
		r.Accounts = append(r.Accounts, j.Name)
	}
	req := d.wakes.add(r.Accounts)
	d.log.Info("polling every account now, as a popfetch run asked")
	d.sched.PollNow()
	now := time.Now()
	for _, j := range d.sched.Status() {
		if j.NeedsAuth {
			// Stopped until "popfetch auth": polling would be refused
			// the same way. Exit 3, as a run of its own would.
			d.wakes.skip(req, j.Name, "stopped until a new authorization: "+j.LastError, exitAuth)
			continue
		}
		if !j.Running && j.LoginDelay > 0 && j.Next.After(now.Add(time.Second)) {
			// A login now would get -ERR [LOGIN-DELAY]: exit 7, as a
			// run of its own would.
			d.wakes.skip(req, j.Name, fmt.Sprintf("the server's LOGIN-DELAY allows the next login at %s",
				j.Next.Local().Format("15:04:05")), exitServer)
		}
	}
	t := time.NewTimer(wakeTimeout)
	defer t.Stop()
	reason, code := "", 0
	select {
	case <-req.done:
	case <-ctx.Done():
		reason, code = "the daemon is stopping", exitInterrupted
	case <-t.C:
		reason, code = fmt.Sprintf("still polling after %v", wakeTimeout), exitSocket
	}
	r.Polled, r.NotPolled = d.wakes.end(req, reason, code)
	return r
}

// quit stops the daemon as SIGTERM does, and returns its PID.
func (d *daemon) quit() int {
	d.quitOnce.Do(func() {
		d.log.Info("stopping, as popfetch --quit asked")
		close(d.quitting)
	})
	return os.Getpid()
}
