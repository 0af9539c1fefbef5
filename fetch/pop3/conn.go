package pop3

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// timeoutConn bounds every read and write on the underlying connection:
// each call may wait at most timeout, and never past the deadline of the
// context of the operation in progress. Cancelling that context interrupts
// a blocked call at once.
type timeoutConn struct {
	net.Conn
	timeout time.Duration

	mu  sync.Mutex
	ctx context.Context
	// lineBy, when set, is when the line being read must be whole: no
	// read may wait past it, however often bytes trickle in. lineBound
	// says it was the deadline set for the read in progress.
	lineBy    time.Time
	lineBound bool
	// While body is set (a message is being read), the time reads spend
	// waiting is summed, and the octets of message data they bring (after
	// TLS: see bodyProgress): each time the wait passes timeout, at least
	// MinBodyRate octets must have come.
	body   bool
	waited time.Duration
	got    int
}

// MinBodyRate is the fewest octets of a message that must arrive for
// every timeout spent waiting for them: a server that dribbles a message
// just inside the idle timeout is given up on.
const MinBodyRate = 1024

// SlowError is a server that sent a reply line or a message too slowly
// (see Options.Timeout). It is a net.Error whose Timeout is true.
type SlowError struct {
	What string // "a reply line", "a message"
	Got  int    // octets received in the window (a message)
	In   time.Duration
}

func (e *SlowError) Error() string {
	if e.What == "a message" {
		return fmt.Sprintf("pop3: the server sent %d octets of a message in %v, under the minimum of %d for each timeout: too slow", e.Got, e.In.Round(time.Millisecond), MinBodyRate)
	}
	return fmt.Sprintf("pop3: %s did not arrive whole within %v: the server sends too slowly", e.What, e.In)
}

// Timeout implements net.Error.
func (e *SlowError) Timeout() bool { return true }

// Temporary implements net.Error.
func (e *SlowError) Temporary() bool { return true }

// wholeLineBy makes reads end by t (zero: no such bound).
func (c *timeoutConn) wholeLineBy(t time.Time) {
	c.mu.Lock()
	c.lineBy = t
	c.mu.Unlock()
}

// readingBody switches the rate check on (a message starts) or off.
func (c *timeoutConn) readingBody(on bool) {
	c.mu.Lock()
	c.body, c.waited, c.got = on, 0, 0
	c.mu.Unlock()
}

// aLongTimeAgo is a deadline in the past, used to wake blocked calls.
var aLongTimeAgo = time.Unix(1, 0)

// watch makes ctx govern the calls that follow, until the returned stop
// function is called.
func (c *timeoutConn) watch(ctx context.Context) (stop func()) {
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
	unregister := context.AfterFunc(ctx, func() {
		c.Conn.SetDeadline(aLongTimeAgo)
	})
	return func() {
		unregister()
		c.mu.Lock()
		if c.ctx == ctx {
			c.ctx = nil
		}
		c.mu.Unlock()
	}
}

func (c *timeoutConn) current() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil {
		return context.Background()
	}
	return c.ctx
}

// arm sets the deadline for the next call. It reports the context's error
// if the context is already done; checking after setting the deadline
// closes the race with the AfterFunc set up by watch. An error from set is
// ignored: it means the connection is closed, which the call itself reports
// more precisely (EOF rather than "closed pipe").
func (c *timeoutConn) arm(ctx context.Context, set func(time.Time) error, line time.Time) (lineBound bool, err error) {
	var d time.Time
	if c.timeout > 0 {
		d = time.Now().Add(c.timeout)
	}
	if !line.IsZero() && (d.IsZero() || line.Before(d)) {
		d, lineBound = line, true
	}
	if cd, ok := ctx.Deadline(); ok && (d.IsZero() || cd.Before(d)) {
		d, lineBound = cd, false
	}
	_ = set(d)
	return lineBound, ctx.Err()
}

func (c *timeoutConn) Read(p []byte) (int, error) {
	ctx := c.current()
	c.mu.Lock()
	line, body := c.lineBy, c.body
	c.mu.Unlock()
	lineBound, err := c.arm(ctx, c.Conn.SetReadDeadline, line)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	n, err := c.Conn.Read(p)
	if body {
		c.mu.Lock()
		c.waited += time.Since(start)
		c.mu.Unlock()
	}
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() && lineBound && ctx.Err() == nil {
			return n, &SlowError{What: "a reply line", In: c.timeout}
		}
		return n, c.explain(ctx, err, "reading from")
	}
	return n, nil
}

// dataReader reads the connection as the client sees it, above TLS, and
// counts what it reads for the rate check (timeoutConn.bodyProgress).
type dataReader struct {
	r  io.Reader
	tc *timeoutConn
}

func (d *dataReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if perr := d.tc.bodyProgress(n); perr != nil && err == nil {
		err = perr
	}
	return n, err
}

// bodyProgress counts n octets as the client reads them, above TLS:
// counted below it, record headers and padding would pass for data. Once the reads have waited a timeout in all, the
// octets counted meanwhile must be at least MinBodyRate.
func (c *timeoutConn) bodyProgress(n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.body || c.timeout <= 0 {
		return nil
	}
	c.got += n
	if c.waited < c.timeout {
		return nil
	}
	waited, got := c.waited, c.got
	c.waited, c.got = 0, 0
	if got < MinBodyRate {
		return &SlowError{What: "a message", Got: got, In: waited}
	}
	return nil
}

func (c *timeoutConn) Write(p []byte) (int, error) {
	ctx := c.current()
	if _, err := c.arm(ctx, c.Conn.SetWriteDeadline, time.Time{}); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	return n, c.explain(ctx, err, "writing to")
}

// explain turns a deadline error into the context's error when the context
// caused it, and into a message naming the idle timeout otherwise.
func (c *timeoutConn) explain(ctx context.Context, err error, what string) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		// The connection's deadline may fire a moment before the
		// context's own timer marks the context done.
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			return context.DeadlineExceeded
		}
		return fmt.Errorf("pop3: timed out after %v %s server: %w", c.timeout, what, err)
	}
	return err
}
