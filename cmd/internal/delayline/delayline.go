// Package delayline is a TCP proxy on loopback that delays each direction
// by a fixed one-way delay, like a distant server, without limiting
// throughput, and counts the round trips its clients make.
//
// A round trip is counted when a client sends data after it has received
// data from the server since it last sent, and at least one one-way delay
// after it last sent: it was waiting for an answer. A pipelining client
// that keeps sending while answers stream in counts once for the stream;
// a client that waits for each answer counts once per command. The first
// data a client sends (after the greeting) counts too.
//
// The line is a TCP end of its own: the server's data is acknowledged by
// the line's kernel, not the client's. Left alone, that kernel delays the
// ACK (up to 40 ms on Linux) while the line has nothing to send, and a
// server that writes its next reply behind Nagle's algorithm waits for
// it: Dovecot answers a pipelined USER and PASS so. A wire adds no such
// wait; the line acknowledges what the server sent when a client that
// acknowledges at once would have: a round trip later (at once without
// added delay). For a client whose kernel delays its ACKs, that is
// kinder than the real network.
package delayline

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Line is a running delay line.
type Line struct {
	listener   net.Listener
	upstream   string
	delay      atomic.Int64 // nanoseconds
	roundTrips atomic.Int64
	wg         sync.WaitGroup
	mu         sync.Mutex
	conns      map[net.Conn]struct{}
}

// New starts a delay line on 127.0.0.1 that forwards to upstream with the
// given one-way delay in each direction.
func New(upstream string, oneWay time.Duration) (*Line, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &Line{listener: l, upstream: upstream, conns: map[net.Conn]struct{}{}}
	d.SetDelay(oneWay)
	d.wg.Add(1)
	go d.serve()
	return d, nil
}

// Addr returns the host:port clients connect to.
func (d *Line) Addr() string { return d.listener.Addr().String() }

// Port returns the port clients connect to.
func (d *Line) Port() int { return d.listener.Addr().(*net.TCPAddr).Port }

// SetDelay changes the one-way delay for data read from now on.
func (d *Line) SetDelay(oneWay time.Duration) { d.delay.Store(int64(oneWay)) }

func (d *Line) oneWay() time.Duration { return time.Duration(d.delay.Load()) }

// RoundTrips returns the round trips counted since the last Reset.
func (d *Line) RoundTrips() int64 { return d.roundTrips.Load() }

// Reset sets the round-trip count to zero.
func (d *Line) Reset() { d.roundTrips.Store(0) }

// Close stops the line and closes every connection through it.
func (d *Line) Close() {
	d.listener.Close()
	d.mu.Lock()
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

func (d *Line) track(c net.Conn, add bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if add {
		d.conns[c] = struct{}{}
	} else {
		delete(d.conns, c)
	}
}

func (d *Line) serve() {
	defer d.wg.Done()
	for {
		client, err := d.listener.Accept()
		if err != nil {
			return
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.proxy(client)
		}()
	}
}

// chunk is data read at one moment, to be written at another.
type chunk struct {
	data []byte
	at   time.Time // when to write it
}

// conversation tracks one connection's timing for the round-trip count.
type conversation struct {
	mu              sync.Mutex
	lastClientSend  time.Time // when the client last sent (as read by the line)
	lastServerToCli time.Time // when server data was last handed to the client
	sentOnce        bool
	serverReads     atomic.Int64 // reads of the server's data so far (ackLater)
}

func (d *Line) proxy(client net.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	server, err := (&net.Dialer{}).DialContext(ctx, "tcp", d.upstream)
	if err != nil {
		client.Close()
		return
	}
	d.track(client, true)
	d.track(server, true)
	defer func() {
		d.track(client, false)
		d.track(server, false)
		client.Close()
		server.Close()
	}()
	conv := &conversation{}
	if d.oneWay() > 0 {
		delayACKs(server) // from the start: see ackLater
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		d.pump(client, server, func(at time.Time) { d.clientSent(conv, at) }, nil)
		server.(*net.TCPConn).CloseWrite()
	}()
	go func() {
		defer wg.Done()
		d.pump(server, client, func(time.Time) { d.ackLater(server, conv) }, func(at time.Time) {
			conv.mu.Lock()
			conv.lastServerToCli = at
			conv.mu.Unlock()
		})
		client.(*net.TCPConn).CloseWrite()
	}()
	wg.Wait()
}

// ackLater acknowledges the server's data just read when the ACK of a
// client that acknowledges at once would reach the server: after the
// data's way to the client and the ACK's way back (see the package doc).
// A later read makes the ACK wait for its own time, so that data the
// server sent since is not acknowledged early.
func (d *Line) ackLater(server net.Conn, conv *conversation) {
	rtt := 2 * d.oneWay()
	if rtt <= 0 {
		ackNow(server)
		return
	}
	n := conv.serverReads.Add(1)
	time.AfterFunc(rtt, func() {
		if conv.serverReads.Load() == n {
			ackNow(server)
		}
	})
}

func (d *Line) clientSent(conv *conversation, at time.Time) {
	conv.mu.Lock()
	defer conv.mu.Unlock()
	waited := conv.lastServerToCli.After(conv.lastClientSend) && at.Sub(conv.lastClientSend) >= d.oneWay()
	if !conv.sentOnce || waited {
		d.roundTrips.Add(1)
	}
	conv.sentOnce = true
	conv.lastClientSend = at
}

// pump copies src to dst, each chunk delay after it was read. onRead is
// called as a chunk is read, onWrite as it is written.
func (d *Line) pump(src, dst net.Conn, onRead, onWrite func(time.Time)) {
	queue := make(chan chunk, 1<<14)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range queue {
			if wait := time.Until(c.at); wait > 0 {
				time.Sleep(wait)
			}
			if onWrite != nil {
				onWrite(time.Now())
			}
			if _, err := dst.Write(c.data); err != nil {
				for range queue {
				}
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			now := time.Now()
			if onRead != nil {
				onRead(now)
			}
			queue <- chunk{data: append([]byte(nil), buf[:n]...), at: now.Add(d.oneWay())}
		}
		if err != nil {
			break // EOF, reset or closed: the close is passed on by the caller
		}
	}
	close(queue)
	<-done
}
