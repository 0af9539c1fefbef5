package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/popfetch/popfetch/cmd/internal/sdnotify"
	"github.com/popfetch/popfetch/config"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/plural"
	"github.com/popfetch/popfetch/fetch/schedule"
	"github.com/popfetch/popfetch/fetch/termsafe"
	"github.com/popfetch/popfetch/uidstore"
)

// storeWait is how long the daemon waits for the UID store at a time when
// a one-shot popfetch holds it; the scheduler tries again after that.
const storeWait = time.Second

func daemonCommand(p *proc) *cli.Command {
	return &cli.Command{
		Name:            "daemon",
		OnUsageError:    onUsageError,
		HideHelpCommand: true,
		Usage:           "poll the named accounts, or all, each at its interval, until stopped",
		ArgsUsage:       "[ACCOUNT...]",
		BashComplete:    completeAccounts,
		Description: "Polls several accounts at once (see [daemon] in docs/config.md), with backoff after failures.\n" +
			"It stays in the foreground; run it under systemd (docs/systemd/) or your init.\n\n" +
			"Signals: SIGHUP reloads the configuration (a broken one is reported and the old one kept);\n" +
			"SIGUSR1 polls every account now; SIGTERM or SIGINT stop it: the message in progress is\n" +
			"finished and committed, no new one is fetched, and popfetch exits 0 within 10 seconds.\n" +
			"\"popfetch status\" shows what it is doing.",
		Flags: append(globalFlags(),
			&cli.StringFlag{Name: "interval", Usage: "poll accounts that set no interval every `INTERVAL` (\"300\" seconds or \"5m\")",
				DefaultText: "5m"}),
		Action: func(c *cli.Context) error {
			interval, err := parseInterval(c.String("interval"), "--interval")
			if err != nil {
				return err
			}
			return runDaemon(c, p, interval)
		},
	}
}

// daemonFlagAction runs "popfetch -d INTERVAL [ACCOUNT...]", fetchmail's
// way to start a daemon; "-d 0" means a single poll, as in fetchmail.
func daemonFlagAction(c *cli.Context, p *proc) error {
	interval, err := parseInterval(c.String("daemon"), "-d")
	if err != nil {
		return err
	}
	if interval == 0 {
		return fetchAction(c, p)
	}
	if !c.Bool("nodetach") && !p.detachedChild() && !underSystemd() {
		return detach(c, p)
	}
	return runDaemon(c, p, interval)
}

// parseInterval reads a number of seconds ("300") or a Go duration
// ("5m"); "" is 0.
func parseInterval(s, flag string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	var d time.Duration
	if n, err := strconv.Atoi(s); err == nil {
		d = time.Duration(n) * time.Second
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, usageError{fmt.Sprintf("%s %q: want seconds (300) or a duration (5m)", flag, s)}
	}
	if d != 0 && d < time.Second || d < 0 {
		return 0, usageError{fmt.Sprintf("%s %q: shorter than a second", flag, s)}
	}
	return d, nil
}

// daemon is a running "popfetch daemon".
type daemon struct {
	opts     options
	names    []string // the accounts asked for; all if empty
	interval time.Duration
	log      *slog.Logger
	trace    io.Writer
	display  *progressDisplay // nil unless on a terminal
	notifier *sdnotify.Notifier
	sched    *schedule.Scheduler
	status   *statusWriter
	wakes    *wakeBoard
	quitting chan struct{} // closed by quit
	quitOnce sync.Once
	// memos keeps each account's fetch.Memo across reloads, by name and
	// configuration: what the server taught stays until the account's
	// configuration changes (or the daemon restarts).
	memos map[string]*fetch.Memo
	// tokens notices "popfetch auth" for the accounts that stopped for
	// want of it.
	tokens tokenWatch
}

func runDaemon(c *cli.Context, p *proc, interval time.Duration) error {
	o := readOptions(c)
	disp := o.progress(c.App.ErrWriter)
	var logW io.Writer = c.App.ErrWriter
	if disp != nil {
		logW = disp
		defer disp.Close()
	}
	if err := o.check(); err != nil {
		return err
	}
	log, closeLog, err := o.logger(logW, true)
	if err != nil {
		return err
	}
	defer closeLog()
	d := &daemon{opts: o, names: c.Args().Slice(), interval: interval, log: log, notifier: sdnotify.New(), display: disp,
		wakes: &wakeBoard{}, quitting: make(chan struct{})}
	if o.verbosity >= 2 {
		d.trace = termsafe.Writer(c.App.ErrWriter)
	}
	cfg, jobs, err := d.load()
	if err != nil {
		return err
	}
	lock, err := lockDaemon(o.stateDir)
	if err != nil {
		return err
	}
	defer lock.Close()

	d.sched = schedule.New(schedule.Config{
		MaxPolls:     cfg.Daemon.MaxConcurrentPolls,
		MaxPerServer: cfg.Daemon.MaxSessionsPerServer,
		MaxBackoff:   cfg.Daemon.MaxBackoff,
		OpenStore: func(ctx context.Context) (*uidstore.Store, error) {
			return uidstore.Open(storePath(o.stateDir), storeWait)
		},
		Log: log,
	}, jobs)
	d.status = newStatusWriter(o.stateDir, o.configPath, d.sched, log)
	d.status.wake, d.status.quit = d.wake, d.quit
	if err := d.status.write(time.Time{}); err != nil {
		log.Warn("could not write the status file: " + err.Error())
	}

	helpers, stopHelpers := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, f := range []func(context.Context){d.handleSignals(p), d.status.run, d.watchdog, d.watchTokens} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(helpers)
		}()
	}

	polls, perServer := d.sched.Limits()
	log.Info("daemon started", "accounts", len(jobs), "pid", os.Getpid(), "state_dir", o.stateDir,
		"max_concurrent_polls", polls, "max_sessions_per_server", perServer)
	d.notify(sdnotify.Ready, sdnotify.Status("polling "+plural.Count(len(jobs), "account", "accounts")))
	p.reportStarted()

	// The daemon stops at the first SIGTERM or SIGINT (p.stop) or when
	// popfetch --quit asks; after a quit, polls still running after
	// graceTimeout are aborted, as after a signal.
	ctx, abort := context.WithCancel(c.Context)
	defer abort()
	stop, ended := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case <-p.stop:
		case <-d.quitting:
			time.AfterFunc(graceTimeout, abort)
		case <-ended:
			return
		}
		close(stop)
	}()
	runErr := d.sched.Run(ctx, stop)
	close(ended)
	d.notify(sdnotify.Stopping, sdnotify.Status("stopping"))
	stopHelpers()
	wg.Wait()
	if err := d.status.write(time.Now()); err != nil {
		log.Warn("could not write the status file: " + err.Error())
	}
	if runErr != nil {
		log.Warn("stopped; polls still running after the grace period were aborted (their messages stay on the server)")
	} else {
		log.Info("stopped")
	}
	return nil
}

func (d *daemon) notify(states ...string) {
	if err := d.notifier.Notify(states...); err != nil {
		d.log.Warn(err.Error())
	}
}

// load reads the configuration and builds a job for each account.
func (d *daemon) load() (*config.Config, []schedule.Job, error) {
	cfg, err := loadConfig(d.opts.configPath)
	if err != nil {
		return nil, nil, err
	}
	accounts, err := cfg.Select(d.names)
	if err != nil {
		return nil, nil, err
	}
	jobs := make([]schedule.Job, 0, len(accounts))
	memos := make(map[string]*fetch.Memo, len(accounts))
	// Accounts on one server with the same TLS options share a TLS
	// configuration: its CA pool, and TLS sessions to resume. A reload
	// starts afresh, reading CA files again.
	tlsc := &fetch.TLSConfigs{}
	for _, a := range accounts {
		key := a.Name + "\x00" + fingerprint(a)
		memo := d.memos[key]
		if memo == nil {
			memo = &fetch.Memo{}
		}
		memos[key] = memo
		j, err := d.job(a, memo, tlsc)
		if err != nil {
			return nil, nil, err
		}
		jobs = append(jobs, j)
	}
	d.memos = memos
	return cfg, jobs, nil
}

// job turns an account into the scheduler's job, whose polls share memo,
// and the TLS configuration with other accounts through tlsc.
func (d *daemon) job(a config.Account, memo *fetch.Memo, tlsc *fetch.TLSConfigs) (schedule.Job, error) {
	acct, err := fetchAccountTLS(a, d.opts, tlsc)
	if err != nil {
		return schedule.Job{}, err
	}
	// What one poll learned (the login method auto settled on, the
	// warnings given, sizes found) serves the next.
	opts := fetch.Options{Log: d.log, Trace: d.trace, Memo: memo}
	if d.display != nil {
		opts.Progress = d.display.Update
	}
	j := schedule.Job{
		Name:     a.Name,
		Mailbox:  acct.Key().String(),
		Server:   net.JoinHostPort(strings.ToLower(a.Server), strconv.Itoa(a.Port)),
		Interval: cmp.Or(a.Interval, d.interval, config.DefaultInterval),
		Config:   fingerprint(a),
	}
	// The closure keeps what it needs of the account, not all of it: a
	// daemon holds one for every account.
	target, name := targetOf(a, d.opts.stateDir, d.trace), a.Name
	j.Poll = func(ctx context.Context, store *uidstore.Store, stop <-chan struct{}) (st fetch.Stats, err error) {
		started := time.Now()
		defer func() { d.wakes.finished(name, started, st, err) }()
		dl, err := target.open()
		if err != nil {
			return fetch.Stats{}, err
		}
		o := opts
		o.Stop = stop
		st, err = fetch.Poll(ctx, acct, store, dl, &o)
		dl.Close()
		d.tokens.note(name, err)
		// Failures are the scheduler's to log (once per streak); a poll
		// that found nothing logs at debug level, so that a daemon
		// polling many accounts often stays quiet.
		switch {
		case err != nil && st.Delivered > 0:
			d.log.Info(summarize(st)+" before the failure", "account", name)
		case err == nil && (st.Delivered > 0 || st.Deleted > 0 || st.Skipped > 0 || st.Failed > 0 || st.Stopped || st.Recovered > 0):
			d.log.Info(summarize(st), "account", name)
		case err == nil:
			d.log.Debug(summarize(st), "account", name)
		}
		return st, err
	}
	return j, nil
}

// fingerprint changes when anything in the account's configuration does.
func fingerprint(a config.Account) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%#v", a)))
	return hex.EncodeToString(sum[:8])
}

// handleSignals returns the loop that acts on SIGHUP and SIGUSR1.
func (d *daemon) handleSignals(p *proc) func(context.Context) {
	hup, stopHup := p.notify(syscall.SIGHUP)
	usr1, stopUsr1 := p.notify(syscall.SIGUSR1)
	return func(ctx context.Context) {
		defer stopHup()
		defer stopUsr1()
		for {
			select {
			case <-hup:
				d.reload()
			case <-usr1:
				d.log.Info("SIGUSR1: polling every account now")
				d.sched.PollNow()
			case <-ctx.Done():
				return
			}
		}
	}
}

// reload rereads the configuration. A configuration that does not load
// is reported and the running one kept.
func (d *daemon) reload() {
	d.notify(sdnotify.Reloading)
	cfg, jobs, err := d.load()
	if err != nil {
		d.log.Error("SIGHUP: the new configuration has errors; keeping the old one: " + err.Error())
		d.status.reloaded(err)
		d.notify(sdnotify.Ready, sdnotify.Status("reload failed; running the old configuration"))
		return
	}
	before := map[string]bool{}
	for _, s := range d.sched.Status() {
		before[s.Name] = true
	}
	var added []string
	for _, j := range jobs {
		if !before[j.Name] {
			added = append(added, j.Name)
		}
		delete(before, j.Name)
	}
	var removed []string
	for n := range before {
		removed = append(removed, n)
	}
	d.sched.SetLimits(cfg.Daemon.MaxConcurrentPolls, cfg.Daemon.MaxSessionsPerServer, cfg.Daemon.MaxBackoff)
	d.sched.Update(jobs)
	d.tokens.reset() // Update resumed the accounts stopped for auth
	d.status.reloaded(nil)
	d.log.Info("SIGHUP: configuration reloaded", "accounts", len(jobs),
		"added", strings.Join(added, ","), "removed", strings.Join(removed, ","))
	d.notify(sdnotify.Ready, sdnotify.Status("polling "+plural.Count(len(jobs), "account", "accounts")))
}

// watchdog keeps systemd's watchdog fed while the scheduler's loop
// answers: a stuck loop stops the keep-alives and systemd restarts us.
func (d *daemon) watchdog(ctx context.Context) {
	every, ok, err := sdnotify.WatchdogInterval()
	if err != nil {
		d.log.Warn(err.Error())
	}
	if !ok {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, every)
			if d.sched.Ping(pctx) == nil {
				d.notify(sdnotify.Watchdog)
			}
			cancel()
		case <-ctx.Done():
			return
		}
	}
}
