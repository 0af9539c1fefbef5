// Command popsoak runs "popfetch daemon" for many accounts against
// in-process pop3test servers (one per account), makes it poll them as
// fast as it will (SIGUSR1 every few milliseconds), delivers new mail now
// and then, and reports the daemon's resident memory and goroutines as
// the polls add up: both must stay flat. At the end it stops the daemon
// with SIGTERM and checks that every message arrived exactly once.
//
//	go run ./cmd/popsoak -popfetch bin/popfetch     (make soak)
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/popfetch/popfetch/cmd/internal/measure"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

func main() {
	bin := flag.String("popfetch", "bin/popfetch", "the popfetch binary")
	accounts := flag.Int("accounts", 200, "accounts, each on its own server")
	polls := flag.Int("polls", 1000, "polls of each account")
	dir := flag.String("dir", "", "working directory (default: a temporary one, removed)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("popsoak: ")
	if err := soak(*bin, *accounts, *polls, *dir); err != nil {
		log.Fatal(err)
	}
}

// sample is the daemon's state after some polls.
type sample struct {
	polls      int
	elapsed    time.Duration
	rss, peak  int64
	goroutines int
	memory     uint64 // the Go runtime's, from the status file
}

func soak(bin string, accounts, polls int, dir string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "popsoak-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	servers := make([]*pop3test.Server, accounts)
	var cfg strings.Builder
	cfg.WriteString("[daemon]\nmax_concurrent_polls = 16\n\n[defaults]\ntls = \"none\"\nallow_insecure_auth = true\n" +
		"server = \"127.0.0.1\"\ninterval = \"1h\"\npassword = \"pw\"\ntimeout = \"10s\"\n")
	sent := 0
	for i := range servers {
		user := fmt.Sprintf("user%d", i)
		s, err := pop3test.NewServer(pop3test.Config{User: user, Password: "pw", Pipelining: true}, message(i, 0))
		if err != nil {
			return err
		}
		defer s.Close()
		sent++
		servers[i] = s
		_, port, _ := strings.Cut(s.Addr(), ":")
		fmt.Fprintf(&cfg, "\n[[account]]\nname = %q\nport = %s\nuser = %q\nmaildir = %q\n",
			user, port, user, filepath.Join(dir, "Mail", user))
	}
	config := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(config, []byte(cfg.String()), 0o600); err != nil {
		return err
	}
	stateDir := filepath.Join(dir, "state")
	logFile, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "--config", config, "--state-dir", stateDir, "daemon")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()
	// SIGUSR1 before the daemon has set up its handlers would kill it.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if data, _ := os.ReadFile(logFile.Name()); strings.Contains(string(data), "daemon started") {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the daemon did not start within 30 s (see %s)", logFile.Name())
		}
	}

	total := func() int {
		n := 0
		for _, s := range servers {
			n += s.Sessions()
		}
		return n
	}
	target := accounts * polls
	marks := []int{target / 100, target / 10, target / 4, target / 2, target * 3 / 4, target}
	var samples []sample
	start := time.Now()
	poke := time.NewTicker(5 * time.Millisecond)
	defer poke.Stop()
	mail := time.NewTicker(100 * time.Millisecond)
	defer mail.Stop()
	lastProgress, lastCount := time.Now(), 0
	log.Printf("%d accounts, %d polls each (%d in all); log in %s", accounts, polls, target, logFile.Name())
	var (
		pending   *sample
		pendingAt time.Time
	)
	for len(marks) > 0 || pending != nil {
		select {
		case err := <-done:
			return fmt.Errorf("the daemon exited: %v (see %s)", err, logFile.Name())
		case <-mail.C:
			i := rand.IntN(accounts)
			servers[i].Add(message(i, sent))
			sent++
		case <-poke.C:
			cmd.Process.Signal(syscall.SIGUSR1)
		}
		n := total()
		if n != lastCount {
			lastCount, lastProgress = n, time.Now()
		} else if time.Since(lastProgress) > 30*time.Second {
			return fmt.Errorf("no poll for 30 s at %d polls (see %s)", n, logFile.Name())
		}
		if pending != nil {
			// The goroutines and Go memory come from the daemon's
			// status after the mark.
			if g, m, at := daemonHealth(bin, config, stateDir); at.After(pendingAt) {
				pending.goroutines, pending.memory = g, m
				samples = append(samples, *pending)
				log.Printf("%d polls, %v: RSS %.1f MiB, %d goroutines", pending.polls, pending.elapsed.Round(time.Second),
					mib(pending.rss), pending.goroutines)
				pending = nil
			}
			continue
		}
		if n >= marks[0] {
			marks = marks[1:]
			pending = &sample{polls: n, elapsed: time.Since(start)}
			pending.rss, pending.peak = measure.Memory(cmd.Process.Pid)
			pendingAt = time.Now()
		}
	}
	// Let the last messages arrive, then stop.
	deadline := time.Now().Add(60 * time.Second)
	for delivered(dir) < sent && time.Now().Before(deadline) {
		cmd.Process.Signal(syscall.SIGUSR1)
		time.Sleep(100 * time.Millisecond)
	}
	stopStart := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	var exitErr error
	select {
	case exitErr = <-done:
	case <-time.After(20 * time.Second):
		return fmt.Errorf("no exit 20 s after SIGTERM")
	}
	stopTook := time.Since(stopStart)

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "polls\telapsed\tRSS\tpeak RSS\tGo runtime memory\tgoroutines\t")
	for _, s := range samples {
		fmt.Fprintf(tw, "%d\t%v\t%.1f MiB\t%.1f MiB\t%.1f MiB\t%d\t\n", s.polls, s.elapsed.Round(time.Second),
			mib(s.rss), mib(s.peak), mib(int64(s.memory)), s.goroutines)
	}
	tw.Flush()
	got := delivered(dir)
	fmt.Printf("\n%d accounts polled %d times each; %d messages sent, %d delivered, SIGTERM to exit %v (%v)\n",
		accounts, lastCount/accounts, sent, got, stopTook.Round(time.Millisecond), exitStatus(exitErr))
	if got != sent {
		return fmt.Errorf("%d messages sent, %d delivered", sent, got)
	}
	return nil
}

// message returns message number n for account i.
func message(i, n int) pop3test.Message {
	return pop3test.Message{UID: fmt.Sprintf("m%d", n),
		Data: []byte(fmt.Sprintf("From: soak@example.com\nSubject: soak %d for %d\n\nbody\n", n, i))}
}

// delivered counts the messages in all the Maildirs.
func delivered(dir string) int {
	dirs, _ := filepath.Glob(filepath.Join(dir, "Mail", "*", "new"))
	n := 0
	for _, d := range dirs {
		entries, _ := os.ReadDir(d)
		n += len(entries)
	}
	return n
}

// daemonHealth asks the daemon (popfetch status) for its goroutines and
// Go memory, and when it answered.
func daemonHealth(bin, config, stateDir string) (int, uint64, time.Time) {
	var st struct {
		Goroutines int       `json:"goroutines"`
		Memory     uint64    `json:"memory_bytes"`
		Updated    time.Time `json:"updated"`
	}
	data, _ := exec.Command(bin, "--config", config, "--state-dir", stateDir, "status", "--json").Output() // exit 0 or 1
	if len(data) > 0 {
		json.Unmarshal(data, &st)
	}
	return st.Goroutines, st.Memory, st.Updated
}

func exitStatus(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
