// Command popbench-daemon measures "popfetch daemon" polling many accounts:
// N accounts with empty mailboxes on one private Dovecot (STLS or, with -tls implicit, POP3S; loopback;
// Dovecot in its high-performance mode so that it does not fork for every
// session), each polled at an interval. After a warm-up in which every
// account has polled once, it measures over a window (two intervals by
// default) and reports the daemon's CPU time per poll (from /proc, which
// other processes' load distorts less than wall time), its resident
// memory per account and at its peak, the polls per second, and how late
// the polls started (due time to start, from the daemon's own histogram).
//
//	go run ./cmd/popbench-daemon -popfetch bin/popfetch            (make bench-daemon)
//	go run ./cmd/popbench-daemon -popfetch bin/popfetch -quick     (2,000 accounts every minute)
//
// It needs root and Dovecot, as the end-to-end tests do. Everything runs
// on loopback and ends with the window.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/popfetch/popfetch/cmd/internal/dovecot"
	"github.com/popfetch/popfetch/cmd/internal/measure"
	"github.com/popfetch/popfetch/fetch/schedule"
)

type params struct {
	bin          string
	accounts     int
	interval     time.Duration
	window       time.Duration
	maxPolls     int
	maxPerServer int
	perf         string
	dir          string
	auth         string
	tls          string // "starttls" or "implicit", as the config key tls
	logins       int    // Dovecot's pop3-login processes (0: its high-performance default)
}

func main() {
	var p params
	flag.StringVar(&p.bin, "popfetch", "bin/popfetch", "the popfetch binary")
	flag.IntVar(&p.accounts, "accounts", 10000, "accounts, each its own user on the one Dovecot")
	flag.DurationVar(&p.interval, "interval", 5*time.Minute, "the accounts' interval")
	flag.DurationVar(&p.window, "window", 0, "how long to measure after the warm-up (default: two intervals)")
	quick := flag.Bool("quick", false, "a shorter run with the same poll rate: 2,000 accounts every 60 s, measured for 2 minutes (unless set otherwise)")
	flag.IntVar(&p.maxPolls, "max-polls", 0, "max_concurrent_polls for the daemon (0: its default)")
	flag.IntVar(&p.maxPerServer, "max-per-server", 0, "max_sessions_per_server for the daemon (0: its default)")
	flag.StringVar(&p.perf, "perf", "", "record a perf profile (perf record -g) of the daemon over the window into this file")
	flag.StringVar(&p.auth, "auth", "scram", "how the accounts log in: scram (auth = \"auto\" takes SCRAM-SHA-256; the server stores SCRAM credentials), "+
		"scram-fresh-salt (the same, but Dovecot keeps plain passwords and salts every login anew, so the client runs PBKDF2 every poll), "+
		"or user (USER/PASS)")
	flag.StringVar(&p.tls, "tls", "starttls", "how the accounts connect: starttls (STLS on the plain port, CAPA again after it) or implicit (POP3S: two round trips fewer)")
	flag.IntVar(&p.logins, "login-processes", 0, "Dovecot's pop3-login processes (default: one a core, at least two); each has a TLS ticket key of its own, so with more than one most sessions cannot be resumed (a client resumes only the tickets of the process that takes its connection): 1 measures the client with every handshake resumed")
	flag.StringVar(&p.dir, "dir", "", "working directory (default: a temporary one on /dev/shm, removed)")
	echo := flag.Bool("echo-server", false, "internal: serve the round-trip measurement (see roundTripCost)")
	rtOnly := flag.Bool("round-trip", false, "only measure what a bare round trip costs a Go client in CPU here, and exit")
	flag.Parse()
	if *echo {
		echoServer()
		return
	}
	if *rtOnly {
		rt, err := roundTripCost()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("a bare round trip (write, the answer after 1 ms, read) costs a Go client %.0f us of CPU here\n", float64(rt)/1e3)
		return
	}
	if *quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["accounts"] {
			p.accounts = 2000
		}
		if !set["interval"] {
			p.interval = time.Minute
		}
	}
	if p.window == 0 {
		p.window = 2 * p.interval
	}
	log.SetFlags(log.Ltime)
	log.SetPrefix("popbench-daemon: ")
	if err := run(p); err != nil {
		log.Fatal(err)
	}
}

func run(p params) error {
	bin, err := filepath.Abs(p.bin)
	if err != nil {
		return err
	}
	if p.dir == "" {
		// The client's Maildirs and state on a tmpfs: what is measured is
		// the daemon's own work, not the disk's.
		d, err := os.MkdirTemp("/dev/shm", "popbench-daemon-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		p.dir = d
	}
	rt, err := roundTripCost()
	if err != nil {
		return fmt.Errorf("measuring a round trip: %w", err)
	}
	ctx := context.Background()
	log.Printf("starting Dovecot (high-performance mode) with %d users", p.accounts)
	srv, err := dovecot.StartWith(ctx, dovecot.Options{MailRoot: "/dev/shm", HighPerformance: true, LoginProcesses: p.logins})
	if err != nil {
		return err
	}
	defer srv.Stop()
	names := make([]string, p.accounts)
	for i := range names {
		names[i] = fmt.Sprintf("u%05d", i)
	}
	if p.auth != "scram" && p.auth != "scram-fresh-salt" && p.auth != "user" {
		return fmt.Errorf("-auth %q: want scram, scram-fresh-salt or user", p.auth)
	}
	if p.tls != "starttls" && p.tls != "implicit" {
		return fmt.Errorf("-tls %q: want starttls or implicit", p.tls)
	}
	if err := srv.AddManyUsers(names, "pw", p.auth == "scram"); err != nil {
		return err
	}

	config := filepath.Join(p.dir, "config.toml")
	if err := os.WriteFile(config, []byte(configText(p, srv, names)), 0o600); err != nil {
		return err
	}
	stateDir := filepath.Join(p.dir, "state")
	logPath := filepath.Join(p.dir, "daemon.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "--config", config, "--state-dir", stateDir, "daemon")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	status := func() (statusJSON, error) { return readStatus(bin, config, stateDir) }

	// Warm-up: every account polls once (the first polls all fall due
	// within seconds of the start), and the schedule spreads out.
	start := time.Now()
	log.Printf("daemon pid %d; warming up until every account has polled once (log: %s)", pid, logPath)
	warmLimit := start.Add(p.interval + 5*time.Minute)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("the daemon exited: %v (see %s)", err, logPath)
		case <-time.After(5 * time.Second):
		}
		st, err := status()
		if err == nil && st.polledOnce() == p.accounts {
			break
		}
		if time.Now().After(warmLimit) {
			return fmt.Errorf("not every account polled within %v (see %s)", time.Since(start).Round(time.Second), logPath)
		}
	}
	warm := time.Since(start)
	log.Printf("every account polled once after %v; measuring for %v", warm.Round(time.Second), p.window)

	before, err := status()
	if err != nil {
		return err
	}
	cpu0, err := processCPU(pid)
	if err != nil {
		return err
	}
	srvCPU0 := serverCPU(srv)
	switches0 := contextSwitches(pid)
	t0 := time.Now()
	var perf *exec.Cmd
	if p.perf != "" {
		perf = exec.Command("perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", p.perf)
		perf.Stdout, perf.Stderr = os.Stderr, os.Stderr
		if err := perf.Start(); err != nil {
			return fmt.Errorf("perf: %w (apt-get install linux-perf)", err)
		}
	}
	var rssMax, rssSum, samples int64
	tick := time.NewTicker(time.Second)
	end := time.After(p.window)
sampling:
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("the daemon exited: %v (see %s)", err, logPath)
		case <-tick.C:
			rss, _ := measure.Memory(pid)
			rssMax = max(rssMax, rss)
			rssSum += rss
			samples++
		case <-end:
			break sampling
		}
	}
	tick.Stop()
	cpu1, err := processCPU(pid)
	if err != nil {
		return err
	}
	elapsed := time.Since(t0)
	srvCPU1 := serverCPU(srv)
	switches := contextSwitches(pid) - switches0
	if perf != nil {
		perf.Process.Signal(os.Interrupt)
		perf.Wait()
	}
	after, err := status()
	if err != nil {
		return err
	}
	rssEnd, peak := measure.Memory(pid)

	stopStart := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		return errors.New("no exit 30 s after SIGTERM")
	}
	stopTook := time.Since(stopStart)

	polls := after.polls() - before.polls()
	if polls <= 0 {
		return errors.New("no polls in the window")
	}
	late := after.Lateness.Since(before.Lateness)
	cpu := cpu1 - cpu0
	perPoll := cpu / time.Duration(polls)
	rssMean := rssSum / max(samples, 1)
	failed := after.failing()

	conn := map[string]string{"starttls": "STLS", "implicit": "POP3S"}[p.tls]
	logins := "pop3-login processes: one a core"
	if p.logins > 0 {
		logins = fmt.Sprintf("%d pop3-login processes", p.logins)
	}
	fmt.Printf("\n%d accounts, interval %v, %s, login %s, empty mailboxes, Dovecot (high-performance, %s) on loopback\n", p.accounts, p.interval, conn, p.auth, logins)
	fmt.Printf("warm-up %v (every account polled once); window %v; SIGTERM to exit %v\n",
		warm.Round(time.Second), elapsed.Round(time.Second), stopTook.Round(time.Millisecond))
	fmt.Printf("polls %d (%.1f/s), daemon CPU %v = %.2f ms/poll (%.1f%% of a core); Dovecot %.2f ms/poll\n",
		polls, float64(polls)/elapsed.Seconds(), cpu.Round(time.Millisecond), ms(perPoll),
		100*cpu.Seconds()/elapsed.Seconds(), ms((srvCPU1-srvCPU0)/time.Duration(polls)))
	fmt.Printf("context switches of the daemon's threads: %.1f a poll\n", float64(switches)/float64(polls))
	fmt.Printf("for scale: a bare round trip (write, wait 1 ms for the answer, read) costs a Go client %.0f us of CPU here\n", float64(rt)/1e3)
	fmt.Printf("RSS mean %.1f MiB, max %.1f MiB, at the end %.1f MiB (%.1f KiB/account); peak (VmHWM, start included) %.1f MiB\n",
		mib(rssMean), mib(rssMax), mib(rssEnd), float64(rssEnd)/1024/float64(p.accounts), mib(peak))
	fmt.Printf("lateness (due to start) of %d polls: p50 %v, p99 %v, max %v (bucket bounds, within 9%%)\n",
		late.Count, late.Quantile(0.5), late.Quantile(0.99), late.Max)
	fmt.Printf("accounts whose last poll failed: %d\n\n", failed)
	fmt.Println("| accounts | interval | CPU/poll | RSS | RSS/account | peak RSS | polls/s | lateness p50 | p99 | max |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	fmt.Printf("| %d | %v | %.2f ms | %.1f MiB | %.1f KiB | %.1f MiB | %.1f | %v | %v | %v |\n",
		p.accounts, p.interval, ms(perPoll), mib(rssMean), float64(rssMean)/1024/float64(p.accounts), mib(peak),
		float64(polls)/elapsed.Seconds(), late.Quantile(0.5).Round(time.Millisecond/10),
		late.Quantile(0.99).Round(time.Millisecond/10), late.Max.Round(time.Millisecond/10))
	if failed > 0 {
		return fmt.Errorf("%d accounts failed (see %s)", failed, logPath)
	}
	return nil
}

// configText is the daemon's configuration: one account per user.
func configText(p params, srv *dovecot.Server, names []string) string {
	var b strings.Builder
	b.WriteString("[daemon]\n")
	if p.maxPolls > 0 {
		fmt.Fprintf(&b, "max_concurrent_polls = %d\n", p.maxPolls)
	}
	if p.maxPerServer > 0 {
		fmt.Fprintf(&b, "max_sessions_per_server = %d\n", p.maxPerServer)
	}
	port := srv.PlainPort
	if p.tls == "implicit" {
		port = srv.TLSPort
	}
	fmt.Fprintf(&b, "\n[defaults]\nserver = \"127.0.0.1\"\nport = %d\ntls = %q\nca_file = %q\n"+
		"password = \"pw\"\ninterval = %q\ntimeout = \"30s\"\n", port, p.tls, srv.CertFile, p.interval.String())
	if p.auth == "user" {
		b.WriteString("auth = \"user\"\n")
	}
	for _, n := range names {
		fmt.Fprintf(&b, "\n[[account]]\nname = %q\nuser = %q\nmaildir = %q\n", n, n, filepath.Join(p.dir, "Mail", n))
	}
	return b.String()
}

// statusJSON is what the benchmark reads of "popfetch status --json".
type statusJSON struct {
	Lateness schedule.Lateness `json:"lateness"`
	Accounts []struct {
		Polls      int    `json:"polls"`
		LastResult string `json:"last_result"`
	} `json:"accounts"`
}

func (s statusJSON) polls() int {
	n := 0
	for _, a := range s.Accounts {
		n += a.Polls
	}
	return n
}

func (s statusJSON) polledOnce() int {
	n := 0
	for _, a := range s.Accounts {
		if a.Polls > 0 {
			n++
		}
	}
	return n
}

func (s statusJSON) failing() int {
	n := 0
	for _, a := range s.Accounts {
		if a.Polls > 0 && a.LastResult != "ok" {
			n++
		}
	}
	return n
}

func readStatus(bin, config, stateDir string) (statusJSON, error) {
	var st statusJSON
	out, err := exec.Command(bin, "--config", config, "--state-dir", stateDir, "status", "--json").Output()
	if err != nil && len(out) == 0 {
		return st, fmt.Errorf("popfetch status: %w", err)
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("popfetch status: %w", err)
	}
	return st, nil
}

// processCPU returns the user and system CPU time of process pid.
func processCPU(pid int) (time.Duration, error) { return cpuTime(pid, false) }

// cpuTime returns the user and system CPU time of process pid, and with
// children that of its children it has waited for.
func cpuTime(pid int, children bool) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: the fields
	// counted from the last ')' are fixed. utime and stime are the 14th
	// and 15th fields, in clock ticks (100 a second on Linux).
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	used := fields[11:13]
	if children {
		used = fields[11:15]
	}
	var ticks int64
	for _, f := range used {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100), nil
}

// contextSwitches returns the context switches of process pid's threads
// (voluntary and not); each costs the kernel, and more so in a VM.
func contextSwitches(pid int) int64 {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var n int64
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += c
			} else if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
				c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n
}

// roundTripCost measures what one round trip costs a Go client in CPU on
// this machine, whatever it sends: it writes a line to a server (a child
// process) that answers after 1 ms, as a server does, and reads the
// answer. Waiting idle and waking for the answer is most of it. A poll
// makes a dozen round trips; this is the floor under them.
func roundTripCost() (time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	srv := exec.Command(self, "-echo-server")
	out, err := srv.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := srv.Start(); err != nil {
		return 0, err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return 0, err
	}
	c, err := net.Dial("tcp", strings.TrimSpace(addr))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	const n = 2000
	buf := make([]byte, 64)
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	for range n {
		if _, err := c.Write([]byte("NOOP\r\n")); err != nil {
			return 0, err
		}
		if _, err := c.Read(buf); err != nil {
			return 0, err
		}
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	used := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
	return time.Duration(used / n), nil
}

// echoServer answers each read with "+OK" after 1 ms, on a loopback port
// it prints, until its client goes.
func echoServer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr())
	c, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 64)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
		time.Sleep(time.Millisecond)
		if _, err := c.Write([]byte("+OK\r\n")); err != nil {
			return
		}
	}
}

// serverCPU returns the CPU time of Dovecot's master and its children,
// those that run and those that have ended.
func serverCPU(srv *dovecot.Server) time.Duration {
	master := srv.Pid()
	var total time.Duration
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		if pid != master && parent(pid) != master {
			continue
		}
		if c, err := cpuTime(pid, true); err == nil {
			total += c
		}
	}
	return total
}

// parent returns the parent of process pid; 0 if it cannot tell.
func parent(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(fields[1])
	return n
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(n int64) float64        { return float64(n) / (1 << 20) }
