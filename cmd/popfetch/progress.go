package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/plural"
	"github.com/popfetch/popfetch/fetch/termsafe"
)

// Progress display timings.
const (
	// progressAfter: a poll is shown once it has run this long, so that
	// the usual short poll draws nothing.
	progressAfter = time.Second
	// progressEvery bounds how often the lines are redrawn.
	progressEvery = 200 * time.Millisecond
)

// progressDisplay draws one line per account being fetched at the bottom
// of a terminal: messages done of total, octets, rate and time left. Log
// lines go through Write, which clears the lines, writes the log line
// above them and draws them again, so the two never mix.
type progressDisplay struct {
	mu     sync.Mutex
	w      io.Writer
	width  int // the terminal's columns; lines are cut to fit
	now    func() time.Time
	polls  map[string]*pollProgress
	order  []string // accounts in the order they started
	drawn  int      // lines on the screen now
	last   time.Time
	closed bool
}

type pollProgress struct {
	p     fetch.Progress
	start time.Time
}

// progress returns the progress display for a run whose log goes to w:
// only on a terminal, with human log lines, not with -q or a -vv trace.
func (o options) progress(w io.Writer) *progressDisplay {
	f, ok := w.(*os.File)
	if !ok || o.quiet || o.verbosity >= 2 || underJournal(w) {
		return nil
	}
	switch o.logFormat {
	case "", logAuto, logHuman:
	default:
		return nil
	}
	return newProgressDisplay(f)
}

// newProgressDisplay returns a display on f if f is a terminal, else nil:
// under cron, a pipe or a log file there is nothing to draw.
func newProgressDisplay(f *os.File) *progressDisplay {
	if f == nil {
		return nil
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), ioctlReadTermios); err != nil {
		return nil
	}
	width := 80
	if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
		width = int(ws.Col)
	}
	return &progressDisplay{w: f, width: width, now: time.Now, polls: map[string]*pollProgress{}}
}

// Update takes a poll's progress (fetch.Options.Progress).
func (d *progressDisplay) Update(p fetch.Progress) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	now := d.now()
	pp, ok := d.polls[p.Account]
	if p.Finished {
		if ok {
			delete(d.polls, p.Account)
			for i, n := range d.order {
				if n == p.Account {
					d.order = append(d.order[:i], d.order[i+1:]...)
					break
				}
			}
			d.redraw(now)
		}
		return
	}
	if !ok {
		pp = &pollProgress{start: now}
		d.polls[p.Account] = pp
		d.order = append(d.order, p.Account)
	}
	pp.p = p
	if now.Sub(d.last) >= progressEvery || p.Done == p.Messages {
		d.redraw(now)
	}
}

// Write writes a log line above the progress lines.
func (d *progressDisplay) Write(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.clear()
	n, err := d.w.Write(b)
	if !d.closed {
		d.draw(d.now())
	}
	return n, err
}

// Close clears the lines for good.
func (d *progressDisplay) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.clear()
	d.closed = true
}

func (d *progressDisplay) redraw(now time.Time) {
	d.clear()
	d.draw(now)
}

// clear erases the lines drawn and leaves the cursor where the first was.
func (d *progressDisplay) clear() {
	if d.drawn == 0 {
		return
	}
	var b strings.Builder
	b.WriteString("\r\x1b[K")
	for i := 1; i < d.drawn; i++ {
		b.WriteString("\x1b[A\x1b[K")
	}
	io.WriteString(d.w, b.String())
	d.drawn = 0
}

// draw writes a line for each poll shown, without a final line end.
func (d *progressDisplay) draw(now time.Time) {
	var lines []string
	for _, name := range d.order {
		pp := d.polls[name]
		if now.Sub(pp.start) < progressAfter || pp.p.Messages == 0 {
			continue
		}
		line := progressLine(pp.p, now.Sub(pp.start))
		if r := []rune(line); len(r) > d.width-1 {
			line = string(r[:d.width-1])
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return
	}
	io.WriteString(d.w, strings.Join(lines, "\n"))
	d.drawn = len(lines)
	d.last = now
}

// progressLine describes one poll: "work: 120/2000 messages, 4.5 of 80.0
// MiB, 1.2 MiB/s, 1m3s left".
func progressLine(p fetch.Progress, elapsed time.Duration) string {
	line := fmt.Sprintf("popfetch: %s: %d/%s, %s of %s", termsafe.String(p.Account), p.Done, plural.Count(p.Messages, "message", "messages"),
		humanBytes(p.DoneBytes), humanBytes(p.Bytes))
	if secs := elapsed.Seconds(); secs > 0 && p.DoneBytes > 0 {
		rate := float64(p.DoneBytes) / secs
		line += fmt.Sprintf(", %s/s", humanBytes(int64(rate)))
		if left := p.Bytes - p.DoneBytes; left > 0 {
			eta := time.Duration(float64(left) / rate * float64(time.Second)).Round(time.Second)
			line += fmt.Sprintf(", %v left", eta)
		}
	}
	return line
}
