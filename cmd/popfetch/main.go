// Command popfetch fetches mail from POP3 servers into Maildirs or MDAs,
// without ever losing a message.
//
// Usage:
//
//	popfetch [global options] [fetch] [ACCOUNT...]
//	popfetch [global options] check [ACCOUNT...]
//
// Exit codes follow fetchmail's; see exit.go and the README.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/popfetch/popfetch/config"
	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/oauth2token"
	"github.com/popfetch/popfetch/fetch/plural"
	"github.com/popfetch/popfetch/fetch/termsafe"
	"github.com/popfetch/popfetch/uidstore"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// graceTimeout is how long a stop asked by SIGTERM or SIGINT may take
// before the polls still running are aborted: the daemon exits within 10 s.
const graceTimeout = 8 * time.Second

func main() {
	if err := harden(); err != nil {
		fmt.Fprintf(os.Stderr, "popfetch: keeping secrets out of core files: %v\n", err)
		os.Exit(exitInternal)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal asks for a clean stop: the message in
		// progress is finished and committed, no new one is fetched.
		// A second signal, or graceTimeout, aborts.
		<-sigs
		close(stop)
		timer := time.AfterFunc(graceTimeout, cancel)
		<-sigs
		timer.Stop()
		cancel()
	}()
	stopProfile := startProfile()
	p := &proc{stop: stop, notify: notifySignals, ready: detachedChild()}
	p.child = p.ready != nil
	code := run(ctx, p, os.Args, os.Stdout, os.Stderr)
	stopProfile()
	cancel()
	os.Exit(code)
}

// proc is what the process gives the commands besides arguments: the
// channel closed by the first SIGTERM or SIGINT, and a way to receive
// other signals (tests replace it).
type proc struct {
	stop   <-chan struct{}
	notify func(sigs ...os.Signal) (<-chan os.Signal, func())
	stdin  io.Reader // nil: os.Stdin
	args   []string  // the command line, set by run
	// ready, in a daemon "popfetch -d" started in the background (child),
	// reports its start to the process that waits for it (detach.go).
	ready *os.File
	child bool
	// targetOAuth2, if set, stands for the function of that name: for
	// tests of "popfetch auth --target" while no target has a table.
	targetOAuth2 func(a config.Account, stateDir string) (o *config.OAuth2, file string, ok bool)
}

// notifySignals delivers sigs on the returned channel until the returned
// function is called.
func notifySignals(sigs ...os.Signal) (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	return ch, func() { signal.Stop(ch) }
}

// stopped reports whether a stop was asked.
func (p *proc) stopped() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// complete answers a completion script's question. urfave/cli panics when
// the words typed so far hold an unknown flag ("--ke"); a completion
// offers nothing then, and never crashes the shell's completion.
func complete(ctx context.Context, app *cli.App, args []string) (code int) {
	defer func() {
		if recover() != nil {
			code = exitMail
		}
	}()
	// After "--" urfave/cli would take the completion flag for an
	// argument and run the command: a completion runs nothing. After a
	// flag that takes a value, it offers the flag's values.
	if slices.Contains(args, "--") || completeFlagValue(app, args, app.Writer) {
		return exitMail
	}
	app.RunContext(ctx, args)
	return exitMail
}

// run runs the command line args and returns the exit code.
func run(ctx context.Context, p *proc, args []string, stdout, stderr io.Writer) int {
	if p == nil {
		p = &proc{notify: notifySignals}
	}
	p.args = args
	app := newApp(stdout, stderr, p)
	if n := len(args); n > 1 && args[n-1] == "--generate-bash-completion" {
		return complete(ctx, app, args)
	}
	err := app.RunContext(ctx, permute(app, args))
	if errors.Is(err, errVersionShown) {
		return exitMail
	}
	var status exitStatus
	if err != nil && !errors.As(err, &status) {
		fmt.Fprintf(stderr, "popfetch: %s\n", termsafe.Lines(err.Error()))
	}
	if p.ready != nil { // a detached daemon that did not start
		msg := "the daemon ended at once"
		if err != nil {
			msg = err.Error()
		}
		p.reportFailed(exitCodeOf(err), msg)
	}
	return exitCodeOf(err)
}

// permute moves options that follow positional arguments in front of them,
// as GNU getopt does, so that "popfetch work -v" means "popfetch -v work".
// Options go right after the command name, if there is one, so that a
// command's own options still reach it. "--" ends the options.
func permute(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	takesValue := map[string]bool{}
	commands := map[string]bool{}
	addFlags := func(flags []cli.Flag) {
		for _, f := range flags {
			if dv, ok := f.(cli.DocGenerationFlag); ok && dv.TakesValue() {
				for _, n := range f.Names() {
					takesValue[n] = true
				}
			}
		}
	}
	addFlags(app.Flags)
	for _, c := range app.Commands {
		addFlags(c.Flags)
		for _, n := range c.Names() {
			commands[n] = true
		}
	}
	var opts, positional []string
	command := ""
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			positional = append(positional, args[i:]...)
			i = len(args)
		case len(a) > 1 && a[0] == '-':
			opts = append(opts, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && takesValue[name] && i+1 < len(args) {
				i++
				opts = append(opts, args[i])
			}
		case command == "" && len(positional) == 0 && commands[a]:
			command = a
		default:
			positional = append(positional, a)
		}
	}
	out := []string{args[0]}
	if command != "" {
		out = append(out, command)
	}
	out = append(out, opts...)
	return append(out, positional...)
}

// globalFlags are accepted both before and after the command name; each
// command gets its own instances, and option() reads them across levels.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Aliases: []string{"f"}, Usage: "read the configuration from `FILE`",
			DefaultText: "$XDG_CONFIG_HOME/popfetch/config.toml", EnvVars: []string{"POPFETCH_CONFIG"}},
		&cli.StringFlag{Name: "state-dir", Usage: "keep the UID store in `DIR`",
			DefaultText: "$XDG_STATE_HOME/popfetch", EnvVars: []string{"POPFETCH_STATE_DIR"}},
		&cli.DurationFlag{Name: "lock-timeout", Value: 10 * time.Second,
			Usage: "wait `DURATION` (\"10s\", \"2m\") for another popfetch to release the state before giving up (exit 8)"},
		&cli.BoolFlag{Name: "keep", Aliases: []string{"k"}, Usage: "leave all mail on the server (overrides keep = false, delete_after and delete_larger_than)"},
		&cli.BoolFlag{Name: "fetch-all", Aliases: []string{"a"}, Usage: "fetch every message, also those delivered before (as fetch_all = true; fetchmail's -a)"},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Count: new(int),
			Usage: "-v: a line per message; -vv: also the protocol trace, POP3 and IMAP (passwords redacted)"},
		&cli.BoolFlag{Name: "nokeep", Aliases: []string{"K"}, Usage: "delete what was fetched this time, also from accounts with keep = true (fetchmail's -K; the opposite of -k)"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q", "silent", "s"}, Usage: "print nothing unless something failed (-s, --silent: fetchmail's spelling)"},
		&cli.StringFlag{Name: "logfile", Aliases: []string{"L"}, Usage: "append log lines to `FILE` instead of standard error (mostly for the daemon)"},
		&cli.BoolFlag{Name: "syslog", Usage: "send log lines to syslog (facility mail) instead of standard error (mostly for the daemon)"},
		&cli.StringFlag{Name: "log-format", Usage: "`FORMAT` of log lines: auto, human, text (key=value) or json",
			DefaultText: "auto: human lines; under systemd with journal priorities"},
	}
}

// errVersionShown ends a run that printed the version.
var errVersionShown = errors.New("version shown")

func newApp(stdout, stderr io.Writer, p *proc) *cli.App {
	return &cli.App{
		Name:        "popfetch",
		Usage:       "fetch mail from POP3 servers into a Maildir, an mbox, an MDA or LMTP, never losing a message",
		HideVersion: true, // -v is --verbose here; the version is -V, as in fetchmail
		Before: func(c *cli.Context) error {
			if c.Bool("version") {
				fmt.Fprintf(c.App.Writer, "popfetch %s\n", version)
				return errVersionShown
			}
			return nil
		},
		Description: "Without a command, popfetch fetches: it polls the named accounts, or all of them, once.\n\n" +
			exitCodesHelp(),
		ArgsUsage:              "[ACCOUNT...]",
		Reader:                 p.stdin,
		Writer:                 stdout,
		ErrWriter:              stderr,
		UseShortOptionHandling: true,
		HideHelpCommand:        true,
		EnableBashCompletion:   true,
		BashComplete:           completeAccounts,
		Flags: append(globalFlags(),
			&cli.BoolFlag{Name: "version", Aliases: []string{"V"}, Usage: "print the version and exit"},
			&cli.StringFlag{Name: "daemon", Aliases: []string{"d"}, Usage: "run as a daemon polling every `INTERVAL` (\"300\" seconds or \"5m\"), as fetchmail -d does: it detaches and returns once the daemon runs (see --nodetach); otherwise as popfetch daemon --interval INTERVAL"},
			&cli.BoolFlag{Name: "nodetach", Aliases: []string{"N"}, Usage: "with -d, stay in the foreground (as popfetch daemon does)"},
			&cli.BoolFlag{Name: "quit", Usage: "stop the running daemon and wait for it to end: exit 0, or 1 if none runs; with -d, then start a new one"},
			&cli.BoolFlag{Name: "check", Aliases: []string{"c"}, Usage: "count new mail without fetching it, as the check command (fetchmail's -c)"},
			// urfave/cli adds --help itself only when there is no help
			// command of the app's own (help.go).
			cli.HelpFlag),
		Action:         func(c *cli.Context) error { return rootAction(c, p) },
		ExitErrHandler: func(*cli.Context, error) {}, // run() reports errors
		OnUsageError:   onUsageError,
		Commands: []*cli.Command{
			{
				Name:            "fetch",
				OnUsageError:    onUsageError,
				HideHelpCommand: true,
				Usage:           "poll the named accounts, or all, once (the default)",
				ArgsUsage:       "[ACCOUNT...]",
				Flags:           globalFlags(),
				Action:          func(c *cli.Context) error { return fetchAction(c, p) },
				BashComplete:    completeAccounts,
			},
			{
				Name:            "check",
				OnUsageError:    onUsageError,
				HideHelpCommand: true,
				Usage:           "count new mail without fetching it: exit 0 if there is some, 1 if none",
				ArgsUsage:       "[ACCOUNT...]",
				Flags:           globalFlags(),
				Action:          func(c *cli.Context) error { return checkAction(c, p) },
				BashComplete:    completeAccounts,
			},
			daemonCommand(p),
			statusCommand(),
			authCommand(p),
			uidlCommand(),
			configCommand(),
			serverinfoCommand(p),
			listCommand(p),
			importCommand(),
			completionCommand(),
			helpCommand(),
			manCommand(),
		},
	}
}

// onUsageError reports a command-line mistake in one line, not with the
// whole help text. An unknown option is named as it was typed (the flag
// package drops one dash: "--fetchall" would read "-fetchall"), with the
// nearest option there is.
func onUsageError(c *cli.Context, err error, _ bool) error {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok || name == "" {
		return usageError{err.Error() + " (see popfetch --help)"}
	}
	var flags []cli.Flag
	if c.Command != nil {
		flags = c.Command.Flags
	}
	if len(flags) == 0 {
		flags = c.App.Flags
	}
	var names []string
	for _, f := range flags {
		for _, n := range f.Names() {
			if len(n) > 1 {
				names = append(names, n)
			}
		}
	}
	typed := "-" + name
	if len(name) > 1 {
		typed = "--" + name
	}
	if c.Command != nil && c.Command.Name != "" && slices.ContainsFunc(c.App.Flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), name) }) {
		// -d, --quit, -c, -N, -V: options of popfetch without a command.
		return usageError{fmt.Sprintf("%s is an option of popfetch without a command (popfetch %s ...), not of popfetch %s (see popfetch --help)", typed, typed, c.Command.Name)}
	}
	msg := "unknown option " + typed
	if s := config.Nearest(name, names); s != "" && len(name) > 1 {
		msg += fmt.Sprintf(" (did you mean --%s?)", s)
	}
	return usageError{msg + " (see popfetch --help)"}
}

// options are the global flags, resolved across the command levels.
type options struct {
	configPath  string
	stateDir    string
	lockTimeout time.Duration
	keep        bool
	nokeep      bool
	fetchAll    bool
	verbosity   int
	quiet       bool
	logFormat   string
	logFile     string
	syslog      bool
}

func readOptions(c *cli.Context) options {
	o := options{lockTimeout: 10 * time.Second}
	for _, x := range c.Lineage() {
		if v := x.String("config"); v != "" && o.configPath == "" {
			o.configPath = v
		}
		if v := x.String("state-dir"); v != "" && o.stateDir == "" {
			o.stateDir = v
		}
		if x.IsSet("lock-timeout") {
			o.lockTimeout = x.Duration("lock-timeout")
		}
		if v := x.String("log-format"); v != "" && o.logFormat == "" {
			o.logFormat = v
		}
		if v := x.String("logfile"); v != "" && o.logFile == "" {
			o.logFile = v
		}
		o.syslog = o.syslog || x.Bool("syslog")
		o.nokeep = o.nokeep || x.Bool("nokeep")
		o.keep = o.keep || x.Bool("keep")
		o.fetchAll = o.fetchAll || x.Bool("fetch-all")
		o.quiet = o.quiet || x.Bool("quiet")
		o.verbosity += x.Count("verbose")
	}
	if o.configPath == "" {
		o.configPath = filepath.Join(xdgDir("XDG_CONFIG_HOME", ".config"), "popfetch", "config.toml")
	}
	if o.stateDir == "" {
		o.stateDir = filepath.Join(xdgDir("XDG_STATE_HOME", ".local/state"), "popfetch")
	}
	o.configPath = config.ExpandPath(o.configPath)
	o.stateDir = config.ExpandPath(o.stateDir)
	if o.logFile != "" {
		o.logFile = config.ExpandPath(o.logFile)
	}
	return o
}

// check refuses options that contradict each other.
func (o options) check() error {
	switch {
	case o.keep && o.nokeep:
		return usageError{"-k (--keep) and -K (--nokeep) contradict each other; give one"}
	case o.logFile != "" && o.syslog:
		return usageError{"--logfile and --syslog contradict each other; give one"}
	}
	return nil
}

// xdgDir returns $env, or ~/fallback when it is unset or not absolute.
func xdgDir(env, fallback string) string {
	if d := os.Getenv(env); filepath.IsAbs(d) {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return fallback
	}
	return filepath.Join(home, fallback)
}

// logger returns the logger the options ask for; daemon puts times on
// human lines. With --logfile or --syslog the lines go there, not to w;
// the caller calls close when done.
func (o options) logger(w io.Writer, daemon bool) (log *slog.Logger, close func(), err error) {
	level := slog.LevelInfo
	switch {
	case o.quiet:
		level = slog.LevelWarn
	case o.verbosity > 0:
		level = slog.LevelDebug
	}
	close = func() {}
	format := o.logFormat
	switch {
	case o.logFile != "":
		f, err := openLogFile(o.logFile)
		if err != nil {
			return nil, nil, err
		}
		w, close = f, func() { f.Close() }
	case o.syslog:
		sw, err := newSyslogWriter()
		if err != nil {
			return nil, nil, err
		}
		w, close = sw, func() { sw.Close() } // auto: priorities, no times (syslog adds them)
	}
	log, err = newLogger(w, format, level, daemon)
	if err != nil {
		close()
		return nil, nil, err
	}
	return log, close, nil
}

// openLogFile opens path for --logfile: appended to, created for this
// user alone.
func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, usageError{fmt.Sprintf("--logfile: %v", err)}
	}
	return f, nil
}

// env is what every command that talks to servers needs.
type env struct {
	opts     options
	accounts []config.Account
	store    *uidstore.Store
	log      *slog.Logger
	poll     *fetch.Options
	display  *progressDisplay // nil unless on a terminal
	closeLog func()
}

// close releases what prepare opened.
func (e *env) close() {
	if e.display != nil {
		e.display.Close()
	}
	e.store.Close()
	e.closeLog()
}

// prepare loads the config, selects the accounts, opens the UID store and
// sets up logging. The caller closes env.store.
func prepare(c *cli.Context) (*env, error) {
	return prepareExcept(c, nil)
}

// prepareExcept is prepare leaving out the accounts in skip (which the
// daemon has polled).
func prepareExcept(c *cli.Context, skip map[string]bool) (*env, error) {
	o := readOptions(c)
	if err := o.check(); err != nil {
		return nil, err
	}
	disp := o.progress(c.App.ErrWriter)
	var logW io.Writer = c.App.ErrWriter
	if disp != nil {
		logW = disp
	}
	log, closeLog, err := o.logger(logW, false)
	if err != nil {
		if disp != nil {
			disp.Close()
		}
		return nil, err
	}
	fail := func(err error) (*env, error) {
		if disp != nil {
			disp.Close()
		}
		closeLog()
		return nil, err
	}
	cfg, err := loadConfig(o.configPath)
	if err != nil {
		return fail(err)
	}
	accounts, err := cfg.Select(c.Args().Slice())
	if err != nil {
		return fail(err)
	}
	accounts = slices.DeleteFunc(accounts, func(a config.Account) bool { return skip[a.Name] })
	store, err := uidstore.Open(storePath(o.stateDir), o.lockTimeout)
	if err != nil {
		return fail(err)
	}
	e := &env{opts: o, accounts: accounts, store: store, log: log, display: disp, closeLog: closeLog}
	e.poll = &fetch.Options{Log: e.log}
	if disp != nil {
		e.poll.Progress = disp.Update
	}
	if o.verbosity >= 2 {
		e.poll.Trace = termsafe.Writer(c.App.ErrWriter)
	}
	return e, nil
}

// loadConfig loads the configuration file, explaining a missing one.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, usageError{fmt.Sprintf("no configuration file at %s; write one (see README.md) or pass --config FILE", path)}
	}
	return cfg, err
}

// storePath is the UID store's file in the state directory.
func storePath(stateDir string) string { return filepath.Join(stateDir, "uids.db") }

// fetchAccount turns a config account into what fetch needs.
func fetchAccount(a config.Account, o options) (*fetch.Account, error) {
	return fetchAccountTLS(a, o, nil)
}

// fetchAccountTLS is fetchAccount with the TLS configuration from tlsc,
// shared with other accounts of the server; nil makes one of its own.
func fetchAccountTLS(a config.Account, o options, tlsc *fetch.TLSConfigs) (*fetch.Account, error) {
	acct := &fetch.Account{
		Name: a.Name, Server: a.Server, Port: a.Port, TLS: a.TLS, User: a.User,
		Password: a.Password.Resolve, Auth: a.Auth, AllowInsecureAuth: a.AllowInsecureAuth,
		Keep: a.Keep || o.keep, SizeLimit: a.SizeLimit, FetchLimit: a.FetchLimit,
		DeleteAfter: a.DeleteAfter, DeleteLargerThan: a.DeleteLargerThan, FetchAll: a.FetchAll || o.fetchAll,
		Recipient: a.Recipient, AddReceived: a.AddReceived, Timeout: a.Timeout, PollTimeout: a.PollTimeout,
		DeliveredTo: a.DeliveredTo, EnvelopeTo: a.EnvelopeTo, ReturnPath: a.ReturnPath,
		Pipelining: a.Pipelining,
	}
	if o.keep {
		// --keep: nothing leaves the server this time.
		acct.DeleteAfter, acct.DeleteLargerThan = 0, 0
	}
	if o.nokeep {
		// --nokeep: what is safe here leaves the server this time, also
		// what a keep = true account kept before (delete_after has
		// nothing left to count).
		acct.Keep, acct.DeleteAfter = false, 0
	}
	if a.OAuth2 != nil {
		src := oauth2token.New(oauth2Config(a, o.stateDir))
		acct.Token, acct.TokenRefused = src.Token, src.Invalidate
	}
	if a.TLS != config.TLSNone {
		to := fetch.TLSOptions{
			CAFile: a.CAFile, Fingerprint: a.TLSFingerprint, MinVersion: a.TLSMinVersion,
			ServerName: a.TLSServerName, ClientCert: a.ClientCert, ClientKey: a.ClientKey,
		}
		get := fetch.NewTLSConfig
		if tlsc != nil {
			get = tlsc.Get
		}
		t, err := get(a.Server, to)
		if err != nil {
			return nil, &fetch.Error{Account: a.Name, Kind: fetch.KindConfig, Err: err}
		}
		acct.TLSConfig = t
	}
	return acct, nil
}

// deliverer returns a's Deliverer; trace, if not nil, receives the
// protocol trace of an IMAP target.
func deliverer(a config.Account, stateDir string, trace io.Writer) (deliver.Deliverer, error) {
	return targetOf(a, stateDir, trace).open()
}

// target is what an account delivers to: the fields of config.Account
// that deliverer needs, a small part of it.
type target struct {
	account, maildir, mbox, lmtp string
	lmtpRecipients, mda          []string
	timeout                      time.Duration
	imap                         *imapTarget
	gmail                        *gmailTarget
}

// targetOf returns a's target; stateDir is where an IMAP or Gmail
// target's OAuth2 token is kept, and trace (nil for none) receives the
// protocol trace of an IMAP target, its lines labelled "ACCOUNT imap: "
// (the POP3 trace's are "ACCOUNT ").
func targetOf(a config.Account, stateDir string, trace io.Writer) target {
	t := target{account: a.Name, maildir: a.Maildir, mbox: a.Mbox, lmtp: a.LMTP,
		lmtpRecipients: a.LMTPRecipients, mda: a.MDA, timeout: a.MDATimeout}
	if a.IMAP != nil {
		t.imap = newIMAPTarget(a, stateDir)
		if trace != nil {
			t.imap.trace = &prefixWriter{w: trace, prefix: a.Name + " imap: "}
		}
	}
	if a.Gmail != nil {
		t.gmail = newGmailTarget(a, stateDir)
	}
	return t
}

// open returns the Deliverer for t.
func (t target) open() (deliver.Deliverer, error) {
	if t.maildir != "" {
		md, err := deliver.NewMaildir(t.maildir)
		if err != nil {
			return nil, &fetch.Error{Account: t.account, Kind: fetch.KindDelivery, Err: err}
		}
		return md, nil
	}
	switch {
	case t.imap != nil:
		return t.imap.open()
	case t.gmail != nil:
		return t.gmail.open()
	case t.mbox != "":
		return &deliver.Mbox{Path: t.mbox, LockTimeout: t.timeout}, nil
	case t.lmtp != "":
		return &deliver.LMTP{Addr: t.lmtp, Recipients: t.lmtpRecipients, Timeout: t.timeout}, nil
	}
	return &deliver.MDA{Argv: t.mda, Timeout: t.timeout}, nil
}

// rootAction runs "popfetch" without a command: fetchmail's flags -d,
// --quit and -c choose what it does; a fetch is the default.
func rootAction(c *cli.Context, p *proc) error {
	if err := readOptions(c).check(); err != nil {
		return err
	}
	daemon := c.IsSet("daemon")
	if c.Bool("check") && (daemon || c.Bool("quit")) {
		return usageError{"-c (--check) goes with neither -d nor --quit"}
	}
	if c.Bool("quit") && !p.detachedChild() {
		if c.Args().Len() > 0 && !daemon {
			return usageError{"--quit stops the daemon; it takes no account names (without -d)"}
		}
		err := quitAction(c)
		if !daemon || err != nil && !errors.Is(err, errNoDaemon) {
			return err
		}
	}
	switch {
	case daemon:
		return daemonFlagAction(c, p)
	case c.Bool("check"):
		return notCommandOrAccount(c.App, checkAction(c, p))
	}
	return notCommandOrAccount(c.App, fetchAction(c, p))
}

func fetchAction(c *cli.Context, p *proc) error {
	// As with fetchmail, a plain "popfetch" while the daemon runs wakes it
	// for a poll now and reports that poll, instead of waiting for it to
	// let go of the UID store.
	woke, err := wakeDaemon(c, p)
	if err != nil {
		return err
	}
	if woke.all {
		return statusErr(combine(woke.codes))
	}
	e, err := prepareExcept(c, woke.polled)
	if err != nil {
		return err
	}
	defer e.close()
	e.poll.Stop = p.stop
	codes := woke.codes
	for _, a := range e.accounts {
		if c.Context.Err() != nil || p.stopped() {
			break
		}
		codes = append(codes, pollOne(c.Context, a, e))
	}
	if c.Context.Err() != nil || p.stopped() {
		return exitStatus(exitInterrupted)
	}
	return statusErr(combine(codes))
}

// oneShotAccount is fetchAccount for a one-shot run, which may ask for a
// missing password on the terminal.
func oneShotAccount(a config.Account, e *env) (*fetch.Account, error) {
	acct, err := fetchAccount(a, e.opts)
	if err != nil {
		return nil, err
	}
	acct.Password = withPrompt(a, acct.Password, ttyPath, e.poll.Stop)
	return acct, nil
}

// oauth2Config is the token source configuration of the POP side of an
// account with an [account.oauth2] table.
func oauth2Config(a config.Account, stateDir string) oauth2token.Config {
	o := a.OAuth2
	return tokenConfig(a, o, tokenFile(stateDir, a.Name, sidePOP, o.RefreshTokenFile), reauthCommand(a.Name, false))
}

// withoutAccount is the text of an account's error for its log line,
// which names the account already: a fetch.Error's Summary ("work: error:
// delivery failed: ...", not "work: error: work: delivery failed: ...").
func withoutAccount(err error) string {
	var fe *fetch.Error
	if errors.As(err, &fe) {
		return fe.Summary()
	}
	return err.Error()
}

// pollOne polls one account, logs its outcome and returns its exit code.
func pollOne(ctx context.Context, a config.Account, e *env) int {
	alog := e.log.With("account", a.Name)
	acct, err := oneShotAccount(a, e)
	if err != nil {
		alog.Error(withoutAccount(err))
		return exitCodeOf(err)
	}
	d, err := deliverer(a, e.opts.stateDir, e.poll.Trace)
	if err != nil {
		alog.Error(withoutAccount(err))
		return exitCodeOf(err)
	}
	st, err := fetch.Poll(ctx, acct, e.store, d, e.poll)
	d.Close()
	summary := summarize(st)
	if err != nil {
		msg := withoutAccount(err)
		if st.Messages > 0 {
			alog.Error(msg, "after", summary)
		} else {
			alog.Error(msg)
		}
		if st.Delivered > 0 {
			return exitMail
		}
		return exitCodeOf(err)
	}
	alog.Info(summary)
	switch {
	case st.LimitReached:
		return exitFetchLimit
	case st.Delivered > 0:
		return exitMail
	}
	return exitNoMail
}

// summarize describes what a poll did, in one line.
func summarize(st fetch.Stats) string {
	summary := fmt.Sprintf("%s on the server, %d new, %d delivered (%s), %d deleted",
		plural.Count(st.Messages, "message", "messages"), st.New, st.Delivered, humanBytes(st.Bytes), st.Deleted)
	if st.Skipped > 0 {
		summary += fmt.Sprintf(", %d too large left on the server", st.Skipped)
	}
	if st.Failed > 0 {
		summary += fmt.Sprintf(", %d failed", st.Failed)
	}
	if st.Stopped {
		summary += ", stopped early"
	}
	if st.Expired > 0 {
		summary += fmt.Sprintf(", %d past delete_after", st.Expired)
	}
	if st.Discarded > 0 {
		summary += fmt.Sprintf(", %d larger than delete_larger_than deleted unread", st.Discarded)
	}
	if st.Recovered > 0 {
		summary += fmt.Sprintf(", %d found delivered by an interrupted run", st.Recovered)
	}
	return summary
}

func checkAction(c *cli.Context, p *proc) error {
	e, err := prepare(c)
	if err != nil {
		return err
	}
	defer e.close()
	e.poll.Stop = p.stop // a stop ends a check at once: it has nothing in progress to finish
	var codes []int
	for _, a := range e.accounts {
		acct, err := oneShotAccount(a, e)
		if err == nil {
			var st fetch.Stats
			st, err = fetch.Check(c.Context, acct, e.store, e.poll)
			if err == nil {
				fmt.Fprintf(c.App.Writer, "%s: %s, %d new\n", a.Name, plural.Count(st.Messages, "message", "messages"), st.New)
				if st.New > 0 {
					codes = append(codes, exitMail)
				} else {
					codes = append(codes, exitNoMail)
				}
				continue
			}
		}
		e.log.With("account", a.Name).Error(withoutAccount(err))
		codes = append(codes, exitCodeOf(err))
	}
	return statusErr(combine(codes))
}
