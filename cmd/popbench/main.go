// Command popbench measures popfetch side by side with mpop and fetchmail
// (those of them installed) against the private Dovecot, through a delay
// line that plays a distant server.
//
// Each case fills a fresh mailbox per tool and run with the same messages,
// runs the tools interleaved, verifies every delivered message by its
// Message-ID and its body (as sent, octet for octet) and that the server
// was emptied (or kept), and prints one
// table: wall time median/min/max, messages/s, MiB/s, peak RSS, round trips
// and popfetch's ratio to each peer measured in the same run.
//
// Every tool delivers durably: popfetch and mpop into a Maildir, fetchmail
// through safecat (which fsyncs) into a Maildir. The Go floor (gofloor,
// cmd/internal/gofloor) fsyncs every message too, but sends its DELEs
// without waiting for the disk and keeps no record of what it delivered:
// it measures what the work costs in Go, and is not a client to use.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/popfetch/popfetch/cmd/internal/delayline"
	"github.com/popfetch/popfetch/cmd/internal/dovecot"
	"github.com/popfetch/popfetch/cmd/internal/measure"
)

// benchCase is one row group of the table.
type benchCase struct {
	name   string
	desc   string
	oneWay time.Duration // delay each way: RTT is twice this
	sizes  func(i int) int64
	count  int
	keep   bool // a no-new-mail poll of a kept mailbox: prime once, then time polls
	imap   bool // popfetch only: POP3 into IMAP, both on the private Dovecot, both legs delayed
}

func cases(small, nonew int) []benchCase {
	four := func(int) int64 { return 4 << 10 }
	mix := func(i int) int64 {
		// 500 messages ≈ 40 MiB: every 20th 1 MiB, every other 60 KiB, the rest 4 KiB.
		switch {
		case i%20 == 0:
			return 1 << 20
		case i%2 == 1:
			return 60 << 10
		}
		return 4 << 10
	}
	return []benchCase{
		{name: "4k-rtt20", desc: fmt.Sprintf("%d × 4 KiB, 20 ms RTT, delete", small), oneWay: 10 * time.Millisecond, sizes: four, count: small},
		{name: "4k", desc: fmt.Sprintf("%d × 4 KiB, no added delay, delete", small), sizes: four, count: small},
		{name: "mix", desc: "500 messages, 4 KiB/60 KiB/1 MiB mix (≈ 40 MiB), no delay, delete", sizes: mix, count: 500},
		{name: "huge", desc: "one 200 MiB message, no delay, delete", sizes: func(int) int64 { return 200 << 20 }, count: 1},
		{name: "nonew", desc: fmt.Sprintf("no-new-mail poll, %d messages kept, no delay", nonew), sizes: func(int) int64 { return 1 << 10 }, count: nonew, keep: true},
		{name: "nonew-rtt20", desc: fmt.Sprintf("no-new-mail poll, %d messages kept, 20 ms RTT", nonew), oneWay: 10 * time.Millisecond, sizes: func(int) int64 { return 1 << 10 }, count: nonew, keep: true},
		{name: "imap-rtt20", desc: fmt.Sprintf("%d × 4 KiB from POP3 into IMAP, 20 ms RTT on both legs, delete", small), oneWay: 10 * time.Millisecond, sizes: four, count: small, imap: true},
		{name: "imap", desc: fmt.Sprintf("%d × 4 KiB from POP3 into IMAP, no added delay, delete", small), sizes: four, count: small, imap: true},
	}
}

func main() {
	var (
		bin      = flag.String("popfetch", "bin/popfetch", "the popfetch binary")
		runs     = flag.Int("runs", 3, "timed runs per tool and case")
		only     = flag.String("cases", "", "comma-separated cases to run (default all): 4k-rtt20,4k,mix,huge,nonew,nonew-rtt20,imap-rtt20,imap")
		toolList = flag.String("tools", "popfetch,mpop,fetchmail,gofloor", "tools to compare (missing ones are skipped); \"base\" is the -base binary, \"gofloor\" the least a Go client does (cmd/internal/gofloor, fetch cases only)")
		baseBin  = flag.String("base", "", "an earlier popfetch binary, the tool \"base\" (added to -tools when set)")
		small    = flag.Int("messages", 2000, "messages in the 4 KiB cases")
		nonew    = flag.Int("kept", 50000, "messages kept on the server in the no-new-mail cases")
		dir      = flag.String("dir", "", "work directory (default: a temporary one, removed afterwards)")
		direct   = flag.Bool("direct", false, "connect the tools to Dovecot itself, not through the delay line, in the cases without added delay (only those may be chosen): the delay line is a TCP end of its own and acknowledges Dovecot's data for the tool, as a prompt client would, so a tool's own delayed ACKs, which hold up replies Dovecot sends behind Nagle's algorithm, show only here (docs/performance.md); round trips are then not counted")
		tmpfs    = flag.Bool("tmpfs", false, "deliver into Maildirs on /dev/shm (the server's store is there always): the disk out of the way, what is left is the tools' own CPU and memory")
	)
	flag.Parse()
	if *tmpfs && *dir == "" {
		d, err := os.MkdirTemp("/dev/shm", "popbench-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "popbench: -tmpfs:", err)
			os.Exit(1)
		}
		*dir = d
	}
	if *baseBin != "" && !slices.Contains(strings.Split(*toolList, ","), "base") {
		*toolList += ",base"
	}
	err := run(*bin, *baseBin, *runs, *only, *toolList, *small, *nonew, *dir, *direct)
	if *tmpfs {
		os.RemoveAll(*dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "popbench:", err)
		os.Exit(1)
	}
}

func run(bin, base string, runs int, only, toolList string, small, nonew int, dir string, direct bool) error {
	if direct {
		if only == "" {
			return errors.New("-direct needs -cases, all without added delay")
		}
		for _, c := range cases(small, nonew) {
			if slices.Contains(strings.Split(only, ","), c.name) && (c.oneWay != 0 || c.imap) {
				return fmt.Errorf("-direct: case %s has an added delay or a second server", c.name)
			}
		}
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	if base != "" {
		if base, err = filepath.Abs(base); err != nil {
			return err
		}
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("%w (make build first)", err)
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "popbench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	var tools []tool
	for _, name := range strings.Split(toolList, ",") {
		t, err := newTool(strings.TrimSpace(name), abs, base, dir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "popbench: skipping %s: %v\n", name, err)
			continue
		}
		tools = append(tools, t)
	}
	if len(tools) == 0 || tools[0].name != "popfetch" {
		return errors.New("popfetch must come first in -tools (the ratios are popfetch's to each tool)")
	}
	ctx := context.Background()
	// The server's mail lives on a tmpfs: in real use the server is
	// another machine, and its expunges do not churn the client's file
	// system (on ext4, thousands of just-deleted inodes make every new
	// inode slower to allocate for a minute or more).
	var opts dovecot.Options
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		opts.MailRoot = "/dev/shm"
	}
	// IMAP (dovecot-imapd) only for the case that needs it.
	opts.IMAP = only == ""
	for _, name := range strings.Split(only, ",") {
		opts.IMAP = opts.IMAP || strings.HasPrefix(name, "imap")
	}
	dc, err := dovecot.StartWith(ctx, opts)
	if err != nil {
		return err
	}
	defer dc.Stop()
	trash := filepath.Join(dir, "trash")
	if err := os.MkdirAll(trash, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(trash)
	line, err := delayline.New(dc.PlainAddr(), 0)
	if err != nil {
		return err
	}
	defer line.Close()
	b := &bench{bin: abs, dc: dc, dir: dir, runs: runs, tools: tools, trash: trash, kept: map[int][]primed{}, line: line, direct: direct}
	defer func() {
		for _, f := range b.cleanup {
			f()
		}
	}()
	fmt.Printf("popbench: %s; tools:", time.Now().Format("2006-01-02 15:04"))
	for _, t := range tools {
		fmt.Printf(" %s (%s)", t.name, t.version)
	}
	fmt.Println()
	for _, c := range cases(small, nonew) {
		if only != "" && !slices.Contains(strings.Split(only, ","), c.name) {
			continue
		}
		results, err := b.runCase(ctx, c)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		printTable(c, tools, results)
	}
	return nil
}

type bench struct {
	bin     string // the popfetch binary
	line    *delayline.Line
	direct  bool             // the tools connect to Dovecot, not to line (-direct)
	kept    map[int][]primed // primed kept mailboxes by size
	cleanup []func()
	dc      *dovecot.Server
	dir     string
	trash   string // finished runs, deleted at the end so as not to churn the file system between runs
	runs    int
	tools   []tool
	users   int
}

// sample is one timed run.
type sample struct {
	wall       time.Duration
	cpu        time.Duration // user + system
	rss        int64
	roundTrips int64
	bytes      int64
	messages   int
}

func (b *bench) newUser() (string, string, error) {
	b.users++
	user := fmt.Sprintf("bench%d", b.users)
	pass := "pw-" + user
	return user, pass, b.dc.AddUser(user, pass)
}

// fill puts the case's messages into user's mailbox and returns their
// bodies' sums by Message-ID, and their total size.
func (b *bench) fill(ctx context.Context, c benchCase, user, pass string) (map[string]bodySum, int64, error) {
	ids := make(map[string]bodySum, c.count)
	var total int64
	for i := 0; i < c.count; i++ {
		id := fmt.Sprintf("%d.%s@popbench", i, c.name)
		size := c.sizes(i)
		body := newBodyHasher()
		msg := io.TeeReader(dovecot.Message(id, fmt.Sprintf("bench %s %d", c.name, i), size), body)
		if err := b.dc.DeliverFrom(user, msg); err != nil {
			return nil, 0, err
		}
		ids["<"+id+">"] = body.sum()
		total += size
	}
	_, err := b.dc.Index(ctx, user, pass)
	return ids, total, err
}

// port is the port the tools connect to: the delay line's, or with
// -direct Dovecot's own (a kept mailbox is known by it, so it is the same
// for every run of the bench).
func (b *bench) port() int {
	if b.direct {
		return b.dc.PlainPort
	}
	return b.line.Port()
}

// roundTrips is what the delay line counted since its Reset; -1 (shown
// as "–") with -direct, which bypasses it.
func (b *bench) roundTrips() int64 {
	if b.direct {
		return -1
	}
	return b.line.RoundTrips()
}

func (b *bench) runCase(ctx context.Context, c benchCase) (map[string][]sample, error) {
	fmt.Fprintf(os.Stderr, "popbench: %s ...\n", c.desc)
	// One line for the whole run: popfetch knows a mailbox by server, port
	// and user, so a kept mailbox must always be reached on the same port.
	line := b.line
	line.SetDelay(0)
	results := map[string][]sample{}
	if c.keep {
		return results, b.runKept(ctx, c, line, results)
	}
	if c.imap {
		return results, b.runIMAP(ctx, c, results)
	}
	for r := 0; r < b.runs; r++ {
		for k := range b.tools {
			t := b.tools[(k+r)%len(b.tools)] // rotate who goes first
			user, pass, err := b.newUser()
			if err != nil {
				return nil, err
			}
			ids, total, err := b.fill(ctx, c, user, pass)
			if err != nil {
				return nil, err
			}
			work := filepath.Join(b.dir, fmt.Sprintf("%s-%s-%d", c.name, t.name, r))
			settle()
			line.SetDelay(c.oneWay)
			line.Reset()
			res, err := t.fetch(work, user, pass, b.port(), false)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t.name, err)
			}
			if err := verify(filepath.Join(work, "Maildir"), ids); err != nil {
				return nil, fmt.Errorf("%s run %d: %w", t.name, r+1, err)
			}
			if left := b.dc.Count(user); left != 0 {
				return nil, fmt.Errorf("%s run %d: %d messages left on the server", t.name, r+1, left)
			}
			results[t.name] = append(results[t.name], sample{wall: res.Wall, cpu: res.CPU, rss: res.PeakRSS,
				roundTrips: b.roundTrips(), bytes: total, messages: c.count})
			b.discard(work, c.count)
		}
		// The floor: a client that keeps nothing and waits for nothing.
		user, pass, err := b.newUser()
		if err != nil {
			return nil, err
		}
		_, total, err := b.fill(ctx, c, user, pass)
		if err != nil {
			return nil, err
		}
		settle()
		line.SetDelay(c.oneWay)
		line.Reset()
		wall, err := bareFetch(b.port(), user, pass, c.count)
		if err != nil {
			return nil, fmt.Errorf("server floor: %w", err)
		}
		if left := b.dc.Count(user); left != 0 {
			return nil, fmt.Errorf("server floor: %d messages left on the server", left)
		}
		results[fetchFloorRow] = append(results[fetchFloorRow], sample{wall: wall, roundTrips: b.roundTrips(), bytes: total, messages: c.count})
	}
	return results, nil
}

// fetchFloorRow names the fetch tables' row of bareFetch: the server's
// own time to send and delete the messages, which bounds every client.
const fetchFloorRow = "server floor (RETR and DELE all, read and dropped)"

// bareFetch logs in to 127.0.0.1:port with USER and PASS, then sends
// RETR and DELE for messages 1..n and QUIT at once, without waiting,
// while it reads the replies and drops the messages: no disk, no
// bookkeeping, no durability. What it takes is the server's part of a
// fetch, the floor under every client's time.
func bareFetch(port int, user, pass string, n int) (time.Duration, error) {
	start := time.Now()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Minute))
	r := bufio.NewReaderSize(conn, 64<<10)
	status := func(what string) error {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !strings.HasPrefix(line, "+OK") {
			return fmt.Errorf("%s: %s", what, strings.TrimSpace(line))
		}
		return nil
	}
	if err := status("greeting"); err != nil {
		return 0, err
	}
	for _, cmd := range []string{"USER " + user, "PASS " + pass} {
		fmt.Fprintf(conn, "%s\r\n", cmd)
		if err := status(strings.Fields(cmd)[0]); err != nil {
			return 0, err
		}
	}
	sent := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(conn, 64<<10)
		for i := 1; i <= n; i++ {
			fmt.Fprintf(w, "RETR %d\r\nDELE %d\r\n", i, i)
		}
		w.WriteString("QUIT\r\n")
		sent <- w.Flush()
	}()
	for i := 1; i <= n; i++ {
		if err := status(fmt.Sprintf("RETR %d", i)); err != nil {
			return 0, err
		}
		for {
			line, err := r.ReadSlice('\n')
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				return 0, fmt.Errorf("RETR %d: %w", i, err)
			}
			if string(line) == ".\r\n" {
				break
			}
		}
		if err := status(fmt.Sprintf("DELE %d", i)); err != nil {
			return 0, err
		}
	}
	if err := status("QUIT"); err != nil {
		return 0, err
	}
	if err := <-sent; err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// primed is a kept mailbox a tool has fetched once.
type primed struct {
	t          tool
	user, pass string
	work       string
}

// runKept primes one kept mailbox per tool (the tool fetches everything
// once, keeping it), then times polls that find nothing new. The no-new-mail
// cases share their mailboxes when they have the same size.
func (b *bench) runKept(ctx context.Context, c benchCase, line *delayline.Line, results map[string][]sample) error {
	ps, err := b.prime(ctx, c, line)
	if err != nil {
		return err
	}
	for r := 0; r < b.runs; r++ {
		for k := range ps {
			p := ps[(k+r)%len(ps)]
			settle()
			line.SetDelay(c.oneWay)
			line.Reset()
			res, err := p.t.fetch(p.work, p.user, p.pass, b.port(), true)
			if err != nil {
				return fmt.Errorf("%s: %w", p.t.name, err)
			}
			if n := countMaildir(filepath.Join(p.work, "Maildir")); n != c.count {
				return fmt.Errorf("%s: the no-new-mail poll changed the Maildir: %d messages, want %d", p.t.name, n, c.count)
			}
			if left := b.dc.Count(p.user); left != c.count {
				return fmt.Errorf("%s: %d messages on the server, want %d kept", p.t.name, left, c.count)
			}
			results[p.t.name] = append(results[p.t.name], sample{wall: res.Wall, cpu: res.CPU, rss: res.PeakRSS, roundTrips: b.roundTrips()})
		}
		// The floor no client can go below: the same mailbox, only
		// logged in to and left.
		settle()
		line.SetDelay(c.oneWay)
		line.Reset()
		wall, err := bareLogin(b.port(), ps[0].user, ps[0].pass)
		if err != nil {
			return fmt.Errorf("server floor: %w", err)
		}
		results[floorRow] = append(results[floorRow], sample{wall: wall, roundTrips: b.roundTrips()})
	}
	return nil
}

// floorRow names the no-new-mail tables' row of a bare login: the
// server's own time to open the mailbox, which bounds every client.
const floorRow = "server floor (greeting, USER, PASS, QUIT)"

// bareLogin connects to 127.0.0.1:port, waits for the greeting, logs in
// with USER and PASS one command at a time, and sends QUIT, timing it
// all: what any client of the mailbox pays before it can ask anything.
func bareLogin(port int, user, pass string) (time.Duration, error) {
	start := time.Now()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(conn)
	for _, cmd := range []string{"", "USER " + user, "PASS " + pass, "QUIT"} {
		if cmd != "" {
			if _, err := fmt.Fprintf(conn, "%s\r\n", cmd); err != nil {
				return 0, err
			}
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, err
		}
		if !strings.HasPrefix(line, "+OK") {
			return 0, fmt.Errorf("%s: %s", strings.Fields(cmd + " greeting")[0], strings.TrimSpace(line))
		}
	}
	return time.Since(start), nil
}

// prime fills and fetches (keeping) one mailbox per tool, once per size.
func (b *bench) prime(ctx context.Context, c benchCase, line *delayline.Line) ([]primed, error) {
	if ps, ok := b.kept[c.count]; ok {
		return ps, nil
	}
	var ps []primed
	for _, t := range b.tools {
		if t.fetchOnly {
			continue
		}
		user, pass, err := b.newUser()
		if err != nil {
			return nil, err
		}
		ids, _, err := b.fill(ctx, c, user, pass)
		if err != nil {
			return nil, err
		}
		work := filepath.Join(b.dir, fmt.Sprintf("kept%d-%s", c.count, t.name))
		start := time.Now()
		line.SetDelay(0) // priming is not timed
		if _, err := t.fetch(work, user, pass, b.port(), true); err != nil {
			return nil, fmt.Errorf("%s priming: %w", t.name, err)
		}
		if err := verify(filepath.Join(work, "Maildir"), ids); err != nil {
			return nil, fmt.Errorf("%s priming: %w", t.name, err)
		}
		fmt.Fprintf(os.Stderr, "popbench:   %s primed %d kept messages in %v\n", t.name, c.count, time.Since(start).Round(time.Millisecond))
		ps = append(ps, primed{t, user, pass, work})
		b.cleanup = append(b.cleanup, func() { b.discard(work, c.count) })
	}
	b.kept[c.count] = ps
	return ps, nil
}

// discard puts a finished run's directory aside, to be deleted at the end:
// deleting thousands of files between runs would slow the next run's file
// creation (see run). A run of a few files is deleted at once.
func (b *bench) discard(work string, files int) {
	if files < 100 {
		os.RemoveAll(work)
		return
	}
	os.Rename(work, filepath.Join(b.trash, filepath.Base(work)))
}

// settle writes out what filling the mailbox and cleaning up the last run
// left in the page cache (and, on a file system mounted with discard, lets
// the trims of deleted files finish), so that a timed run pays only for
// its own work.
func settle() {
	syscall.Sync()
	time.Sleep(300 * time.Millisecond)
}

// verify checks that the Maildir holds exactly the messages with ids, each
// once and whole: its body (what follows the header) as it was sent. The
// tools add header fields; none may change a body.
func verify(maildir string, ids map[string]bodySum) error {
	got := map[string]int{}
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(maildir, sub))
		for _, e := range entries {
			path := filepath.Join(maildir, sub, e.Name())
			id, body, err := readMessage(path)
			if err != nil {
				return err
			}
			if want, ok := ids[id]; ok && body != want {
				return fmt.Errorf("message %s (%s): body of %d octets differs from the %d sent", id, path, body.n, want.n)
			}
			got[id]++
		}
	}
	for id := range ids {
		switch got[id] {
		case 0:
			return fmt.Errorf("message %s missing", id)
		case 1:
		default:
			return fmt.Errorf("message %s delivered %d times", id, got[id])
		}
	}
	if len(got) != len(ids) {
		return fmt.Errorf("%d distinct messages delivered, want %d", len(got), len(ids))
	}
	return nil
}

// bodySum is what verify compares of a message's body: its length and
// SHA-256.
type bodySum struct {
	n   int64
	sum [sha256.Size]byte
}

// bodyHasher sums what is written to it after the header's blank line.
type bodyHasher struct {
	h      hash.Hash
	n      int64
	inBody bool
	lastNL bool // the last octet of the header so far was LF
}

func newBodyHasher() *bodyHasher { return &bodyHasher{h: sha256.New()} }

func (w *bodyHasher) Write(p []byte) (int, error) {
	total := len(p)
	for !w.inBody && len(p) > 0 {
		c := p[0]
		p = p[1:]
		w.inBody = c == '\n' && w.lastNL
		w.lastNL = c == '\n'
	}
	w.h.Write(p)
	w.n += int64(len(p))
	return total, nil
}

func (w *bodyHasher) sum() bodySum {
	s := bodySum{n: w.n}
	w.h.Sum(s.sum[:0])
	return s
}

// readMessage reads a delivered message: the Message-ID field of its
// header, and its body's sum.
func readMessage(path string) (string, bodySum, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", bodySum{}, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	id := ""
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return "", bodySum{}, fmt.Errorf("%s: header: %w", path, err)
		}
		if v, ok := bytes.CutPrefix(line, []byte("Message-ID: ")); ok && id == "" {
			id = string(bytes.TrimSpace(v))
		}
		if len(line) == 1 {
			break // the blank line
		}
	}
	if id == "" {
		return "", bodySum{}, fmt.Errorf("%s: no Message-ID", path)
	}
	body := newBodyHasher()
	body.inBody = true
	if _, err := io.Copy(body, r); err != nil {
		return "", bodySum{}, err
	}
	return id, body.sum(), nil
}

func countMaildir(maildir string) int {
	n := 0
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(maildir, sub))
		n += len(entries)
	}
	return n
}

func median(xs []time.Duration) time.Duration {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func printTable(c benchCase, tools []tool, results map[string][]sample) {
	fmt.Printf("\n### %s\n\n", c.desc)
	fmt.Println("| tool | wall median | min | max | CPU median | msgs/s | MiB/s | peak RSS | round trips | popfetch ÷ tool: wall | CPU |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	pf := results["popfetch"]
	names := make([]string, 0, len(tools)+1)
	for _, t := range tools {
		names = append(names, t.name)
	}
	names = append(names, floorRow, fetchFloorRow)
	for _, name := range names {
		ss := results[name]
		if len(ss) == 0 {
			continue
		}
		var walls, cpus []time.Duration
		var rss int64
		var rts []int64
		for _, s := range ss {
			walls = append(walls, s.wall)
			cpus = append(cpus, s.cpu)
			rss = max(rss, s.rss)
			rts = append(rts, s.roundTrips)
		}
		sort.Slice(rts, func(i, j int) bool { return rts[i] < rts[j] })
		med := median(walls)
		rate, mib := "–", "–"
		if ss[0].messages > 0 {
			rate = fmt.Sprintf("%.0f", float64(ss[0].messages)/med.Seconds())
			mib = fmt.Sprintf("%.1f", float64(ss[0].bytes)/(1<<20)/med.Seconds())
		}
		ratio, cpuRatio := "–", "–"
		if name != "popfetch" && len(pf) > 0 {
			var pw, pc []time.Duration
			for _, s := range pf {
				pw = append(pw, s.wall)
				pc = append(pc, s.cpu)
			}
			ratio = fmt.Sprintf("%.2f", median(pw).Seconds()/med.Seconds())
			if c := median(cpus); c > 0 {
				cpuRatio = fmt.Sprintf("%.2f", median(pc).Seconds()/c.Seconds())
			}
		}
		rssCol, cpuCol := fmt.Sprintf("%.1f MiB", float64(rss)/(1<<20)), fmtDur(median(cpus))
		if name == floorRow || name == fetchFloorRow {
			rssCol, cpuCol = "–", "–"
		}
		rtCol := "–"
		if rt := rts[len(rts)/2]; rt >= 0 {
			rtCol = strconv.FormatInt(rt, 10)
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name,
			fmtDur(med), fmtDur(slices.Min(walls)), fmtDur(slices.Max(walls)), cpuCol, rate, mib,
			rssCol, rtCol, ratio, cpuRatio)
	}
}

func fmtDur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// runTool runs a tool's command in work with env and measures it.
func runTool(work string, env []string, argv ...string) (measure.Result, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), env...)
	out, err := os.Create(filepath.Join(work, "output.log"))
	if err != nil {
		return measure.Result{}, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	res, err := measure.Run(cmd)
	if err != nil {
		return res, err
	}
	// popfetch and fetchmail: 0 mail, 1 no mail; mpop: 0 either way.
	if res.ExitCode != 0 && res.ExitCode != 1 {
		log, _ := os.ReadFile(filepath.Join(work, "output.log"))
		return res, fmt.Errorf("%s exited %d:\n%s", filepath.Base(argv[0]), res.ExitCode, log)
	}
	return res, nil
}
