// Command popdemo shows popfetch at work without a mail server of your own:
// it starts the private Dovecot that the tests use (on loopback ports),
// fills a mailbox, writes a config for it and runs popfetch into a Maildir,
// printing what happens.
//
// With -runs N it times N fetches of a freshly filled mailbox instead and
// prints the median wall time and the peak memory (RSS) of popfetch.
//
// It needs root (Dovecot switches to an unprivileged mail user) and
// Dovecot installed: `make demo` takes care of both.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/popfetch/popfetch/cmd/internal/dovecot"
	"github.com/popfetch/popfetch/cmd/internal/measure"
	"github.com/popfetch/popfetch/config"
)

func main() {
	var (
		bin      = flag.String("popfetch", "bin/popfetch", "the popfetch binary to run")
		dir      = flag.String("dir", "demo", "where to put the config, the Maildir and the state")
		messages = flag.Int("messages", 25, "how many messages to put in the mailbox")
		sizeText = flag.String("size", "", "make every message this size (e.g. 4KiB, 100MiB); default: a mix")
		runs     = flag.Int("runs", 0, "time this many fetches (each of a freshly filled mailbox) instead of the demo")
		mode     = flag.String("tls", "starttls", "how popfetch connects: implicit, starttls or none")
	)
	flag.Parse()
	size := int64(0)
	if *sizeText != "" {
		n, err := config.ParseSize(*sizeText)
		if err != nil {
			fatal(err)
		}
		size = n
	}
	if err := run(*bin, *dir, *messages, size, *runs, *mode); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "popdemo:", err)
	os.Exit(1)
}

func run(bin, dir string, n int, size int64, runs int, mode string) error {
	ctx := context.Background()
	abs, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("%w (build it first: make build)", err)
	}
	say("Starting a private Dovecot on 127.0.0.1 ...")
	dc, err := dovecot.Start(ctx)
	if errors.Is(err, dovecot.ErrNotInstalled) || errors.Is(err, dovecot.ErrNotRoot) {
		return fmt.Errorf("%w; run `make demo`, which installs Dovecot, as root", err)
	}
	if err != nil {
		return err
	}
	defer dc.Stop()
	say("  POP3 (STLS) on %s, POP3S on %s, certificate %s", dc.PlainAddr(), dc.TLSAddr(), dc.CertFile)
	const user, password = "demo", "demo-password"
	if err := dc.AddUser(user, password); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	dir, _ = filepath.Abs(dir)
	// Keep the Dovecot certificate beside the config: Dovecot's copy goes
	// when it stops.
	caFile := filepath.Join(dir, "dovecot-cert.pem")
	if err := os.WriteFile(caFile, dc.Cert.CertPEM, 0o644); err != nil {
		return err
	}
	p := demo{dc: dc, bin: abs, dir: dir, user: user, password: password}
	if err := p.writeConfig(mode, caFile); err != nil {
		return err
	}
	if runs > 0 {
		return p.measure(ctx, n, size, runs)
	}
	return p.show(ctx, n, size)
}

type demo struct {
	dc             *dovecot.Server
	bin, dir       string
	user, password string
}

func (p *demo) config() string  { return filepath.Join(p.dir, "config.toml") }
func (p *demo) maildir() string { return filepath.Join(p.dir, "Mail") }
func (p *demo) state() string   { return filepath.Join(p.dir, "state") }

func (p *demo) writeConfig(mode, caFile string) error {
	port := p.dc.PlainPort
	tlsLines := fmt.Sprintf("tls = %q\nca_file = %q", mode, caFile)
	switch mode {
	case "implicit":
		port = p.dc.TLSPort
	case "none":
		tlsLines = "tls = \"none\"\nallow_insecure_auth = true"
	case "starttls":
	default:
		return fmt.Errorf("-tls %q: want implicit, starttls or none", mode)
	}
	text := fmt.Sprintf(`# Written by popdemo for its private Dovecot.
[[account]]
name = "demo"
server = "127.0.0.1"
port = %d
%s
user = %q
password = %q
maildir = %q
`, port, tlsLines, p.user, p.password, p.maildir())
	return os.WriteFile(p.config(), []byte(text), 0o600)
}

// fill delivers n messages to the server's mailbox and lets Dovecot index
// them. size 0 means a mix of 2 KiB to 200 KiB. Messages are generated as
// streams: filling costs no memory, which keeps popdemo's own memory out
// of the figures it measures.
func (p *demo) fill(ctx context.Context, n int, size int64) error {
	for i := 0; i < n; i++ {
		sz := size
		if sz == 0 {
			sz = []int64{2 << 10, 4 << 10, 12 << 10, 60 << 10, 200 << 10}[i%5]
		}
		if err := p.dc.DeliverFrom(p.user, dovecot.Message(fmt.Sprintf("%d.%d@popdemo", i, time.Now().UnixNano()), fmt.Sprintf("Demo message %d", i+1), sz)); err != nil {
			return err
		}
	}
	_, err := p.dc.Index(ctx, p.user, p.password)
	return err
}

// popfetch runs the binary and returns its exit code, wall time and peak
// RSS.
func (p *demo) popfetch(args ...string) (int, time.Duration, int64, error) {
	full := append([]string{"--config", p.config(), "--state-dir", p.state()}, args...)
	cmd := exec.Command(p.bin, full...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	res, err := measure.Run(cmd)
	return res.ExitCode, res.Wall, res.PeakRSS, err
}

func (p *demo) show(ctx context.Context, n int, size int64) error {
	say("Delivering %d messages to the mailbox of %q on the server ...", n, p.user)
	if err := p.fill(ctx, n, size); err != nil {
		return err
	}
	say("Config written to %s:", p.config())
	text, _ := os.ReadFile(p.config())
	fmt.Print(indent(string(text)))
	say("")
	say("$ popfetch --config %s --state-dir %s -v", p.config(), p.state())
	code, wall, _, err := p.popfetch("-v")
	if err != nil {
		return err
	}
	say("(exit %d: %s, in %v)", code, meaning(code), wall.Round(time.Millisecond))
	entries, _ := os.ReadDir(filepath.Join(p.maildir(), "new"))
	say("")
	say("The Maildir %s now holds %d messages in new/; the server holds %d.", p.maildir(), len(entries), p.dc.Count(p.user))
	say("")
	say("Running it again fetches nothing: the server is empty and nothing is fetched twice.")
	say("$ popfetch --config %s --state-dir %s", p.config(), p.state())
	code, _, _, err = p.popfetch()
	if err != nil {
		return err
	}
	say("(exit %d: %s)", code, meaning(code))
	say("")
	say("Look at the mail: ls %s/new", p.maildir())
	return nil
}

func (p *demo) measure(ctx context.Context, n int, size int64, runs int) error {
	var walls []time.Duration
	var peak int64
	for r := 1; r <= runs; r++ {
		os.RemoveAll(p.maildir())
		os.RemoveAll(p.state())
		if err := p.fill(ctx, n, size); err != nil {
			return err
		}
		// Write out what filling left in the page cache, so that the
		// timed run pays only for its own work.
		syscall.Sync()
		time.Sleep(300 * time.Millisecond)
		code, wall, rss, err := p.popfetch("-q")
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("run %d: popfetch exited %d", r, code)
		}
		entries, _ := os.ReadDir(filepath.Join(p.maildir(), "new"))
		if len(entries) != n {
			return fmt.Errorf("run %d: %d messages delivered, want %d", r, len(entries), n)
		}
		if left := p.dc.Count(p.user); left != 0 {
			return fmt.Errorf("run %d: %d messages left on the server", r, left)
		}
		say("run %d: %d messages in %v, peak RSS %.1f MiB", r, n, wall.Round(time.Millisecond), float64(rss)/(1<<20))
		walls = append(walls, wall)
		peak = max(peak, rss)
	}
	sort.Slice(walls, func(i, j int) bool { return walls[i] < walls[j] })
	say("median of %d: %v (min %v, max %v); peak RSS %.1f MiB",
		runs, walls[len(walls)/2].Round(time.Millisecond), walls[0].Round(time.Millisecond),
		walls[len(walls)-1].Round(time.Millisecond), float64(peak)/(1<<20))
	return nil
}

func meaning(code int) string {
	switch code {
	case 0:
		return "mail delivered"
	case 1:
		return "no new mail"
	}
	return "see popfetch --help for exit codes"
}

func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
