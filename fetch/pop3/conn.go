package pop3

import (
	"context"
	"fmt"
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
func (c *timeoutConn) arm(ctx context.Context, set func(time.Time) error) error {
	var d time.Time
	if c.timeout > 0 {
		d = time.Now().Add(c.timeout)
	}
	if cd, ok := ctx.Deadline(); ok && (d.IsZero() || cd.Before(d)) {
		d = cd
	}
	_ = set(d)
	return ctx.Err()
}

func (c *timeoutConn) Read(p []byte) (int, error) {
	ctx := c.current()
	if err := c.arm(ctx, c.Conn.SetReadDeadline); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	return n, c.explain(ctx, err, "reading from")
}

func (c *timeoutConn) Write(p []byte) (int, error) {
	ctx := c.current()
	if err := c.arm(ctx, c.Conn.SetWriteDeadline); err != nil {
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
