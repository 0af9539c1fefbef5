package main

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/popfetch/popfetch/cmd/internal/roff"
)

// writeManPage writes popfetch(1): the commands and options from the
// command-line definition of app (each option once: those every command
// takes under OPTIONS, a command's own under the command), the exit
// codes from exitCodeTable, the CONFIGURATION section from configRef
// (docs/config.md), and the prose below around them.
func writeManPage(w io.Writer, app *cli.App, configRef string) error {
	var b strings.Builder
	b.WriteString(`.\" popfetch(1), made by "popfetch man" (make docs) from the command-line` + "\n" +
		`.\" definition and docs/config.md. Do not edit: change those and run make docs.` + "\n")
	b.WriteString(".TH POPFETCH 1 \"\" \"popfetch\" \"User Commands\"\n")
	b.WriteString(".SH NAME\npopfetch \\- " + roff.Text(app.Usage) + "\n")

	global := globalFlagNames(app)
	commands := visibleCommands(app)

	b.WriteString(".SH SYNOPSIS\n")
	synopsis := func(cmd, args string) {
		b.WriteString(".PP\n.B popfetch\n")
		line := `[\fIoptions\fR]`
		if cmd != "" {
			line += " " + roff.Bold(cmd)
		}
		if args != "" {
			line += " " + argsUsage(args)
		}
		b.WriteString(line + "\n")
	}
	synopsis("", app.ArgsUsage)
	// fetchmail's ways to run the daemon and stop it, which a reader
	// coming from fetchmail looks for here.
	b.WriteString(".PP\n.B popfetch\n[\\fIoptions\\fR] " + roff.Bold("-d") + " " + roff.Italic("INTERVAL") +
		" [" + roff.Bold("-N") + "] [" + roff.Italic("ACCOUNT") + roff.Text("...]") + "\n")
	b.WriteString(".PP\n.B popfetch\n[\\fIoptions\\fR] " + roff.Bold("--quit") + " [" + roff.Bold("-d") + " " + roff.Italic("INTERVAL") + "]\n")
	for _, c := range commands {
		synopsis(c.Name, c.ArgsUsage)
	}

	b.WriteString(".SH DESCRIPTION\n")
	b.WriteString(manDescription())

	var without []string // commands that take no options
	for _, c := range commands {
		if len(visibleFlags(c.Flags)) == 0 {
			without = append(without, c.Name)
		}
	}
	intro := "These options are accepted before or after the command name and its arguments, by every command"
	if len(without) > 0 {
		intro += " but " + strings.Join(without, ", ")
	}
	b.WriteString(".SH OPTIONS\n.PP\n" + roff.Text(intro+"; those marked (no command) only without a command name.") + "\n")
	options := visibleFlags(app.Flags)
	if slices.ContainsFunc(app.Flags, func(f cli.Flag) bool { return f == cli.HelpFlag }) {
		options = append(options, cli.HelpFlag) // every command takes it
	}
	for _, f := range options {
		note := ""
		if f != cli.HelpFlag && !takenByACommand(f, commands) {
			note = " (no command)"
		}
		writeFlag(&b, f, note)
	}

	b.WriteString(".SH COMMANDS\n.PP\n" + roff.Text("Without a command, popfetch fetches, as "+
		"popfetch fetch does. Each command takes the options above, and those listed with it.") + "\n")
	for _, c := range commands {
		b.WriteString(".SS " + roff.Arg(c.Name) + "\n")
		b.WriteString(".PP\n" + roff.Bold("popfetch "+c.Name))
		if c.ArgsUsage != "" {
			b.WriteString(" " + argsUsage(c.ArgsUsage))
		}
		b.WriteString("\n")
		if len(c.Aliases) > 0 {
			b.WriteString(".br\n" + roff.Text("(also: ") + roff.Bold(strings.Join(c.Aliases, ", ")) + ")\n")
		}
		if c.Usage != "" {
			b.WriteString(".PP\n" + prose(sentence(c.Usage)) + "\n")
		}
		if c.Description != "" {
			b.WriteString(description(c.Description))
		}
		var own []cli.Flag
		for _, f := range visibleFlags(c.Flags) {
			if !global[f.Names()[0]] {
				own = append(own, f)
			}
		}
		if len(own) > 0 {
			b.WriteString(".PP\n" + roff.Text("Options of "+c.Name+":") + "\n.RS 4\n")
			for _, f := range own {
				writeFlag(&b, f, "")
			}
			b.WriteString(".RE\n")
		}
	}

	b.WriteString(".SH CONFIGURATION\n")
	b.WriteString(roff.Markdown(configRef))

	b.WriteString(manMiddle())

	b.WriteString(".SH ENVIRONMENT\n")
	for _, f := range visibleFlags(app.Flags) {
		ev, ok := f.(interface{ GetEnvVars() []string })
		if !ok {
			continue
		}
		for _, e := range ev.GetEnvVars() {
			b.WriteString(".TP\n" + roff.Bold(e) + "\n" + roff.Text("The default of ") + roff.Bold("--"+f.Names()[0]) +
				roff.Text("; the option, when given, wins.") + "\n")
		}
	}
	b.WriteString(manEnvironment())

	b.WriteString(".SH \"EXIT STATUS\"\n.PP\n" + roff.Text("The exit codes are fetchmail's, so that scripts and cron "+
		"lines written for fetchmail keep working. When several accounts are polled, the run exits 0 if any "+
		"delivered mail, else with the highest code of a failure, else 13 if a fetch limit held mail back, else 1.") + "\n")
	for _, e := range exitCodeTable() {
		b.WriteString(fmt.Sprintf(".TP\n.B %d\n%s\n", e.code, prose(sentence(e.meaning))))
	}

	b.WriteString(manEnd())
	_, err := io.WriteString(w, dropParagraphAfterHeading(b.String()))
	return err
}

// dropParagraphAfterHeading removes the .PP lines that follow a heading
// directly: a heading starts a paragraph of its own, and linters warn of
// the empty one.
func dropParagraphAfterHeading(page string) string {
	lines := strings.Split(page, "\n")
	out := lines[:0]
	for i, l := range lines {
		if l == ".PP" && i > 0 && (strings.HasPrefix(lines[i-1], ".SH ") || strings.HasPrefix(lines[i-1], ".SS ")) {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// globalFlagNames are the names of the options the application itself
// takes: listed once, under OPTIONS, not under each command.
func globalFlagNames(app *cli.App) map[string]bool {
	names := map[string]bool{"help": true, "h": true}
	for _, f := range app.Flags {
		for _, n := range f.Names() {
			names[n] = true
		}
	}
	return names
}

// takenByACommand reports whether any of commands accepts f.
func takenByACommand(f cli.Flag, commands []*cli.Command) bool {
	name := f.Names()[0]
	for _, c := range commands {
		for _, cf := range c.Flags {
			if slices.Contains(cf.Names(), name) {
				return true
			}
		}
	}
	return false
}

// visibleCommands are the commands a user is told about.
func visibleCommands(app *cli.App) []*cli.Command {
	var out []*cli.Command
	for _, c := range app.Commands {
		if !c.Hidden {
			out = append(out, c)
		}
	}
	return out
}

// visibleFlags are flags without the hidden ones and --help.
func visibleFlags(flags []cli.Flag) []cli.Flag {
	var out []cli.Flag
	for _, f := range flags {
		if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
			continue
		}
		if f.Names()[0] == "help" {
			continue
		}
		out = append(out, f)
	}
	return out
}

// writeFlag writes one option as a tagged paragraph: its names, short
// ones first, its value's placeholder, then its usage, default and
// environment variable.
func writeFlag(b *strings.Builder, f cli.Flag, note string) {
	doc, _ := f.(cli.DocGenerationFlag)
	usage := ""
	if doc != nil {
		usage = doc.GetUsage()
	}
	placeholder := ""
	if m := regexp.MustCompile("`([^`]+)`").FindStringSubmatch(usage); m != nil {
		placeholder = m[1]
	}
	usage = strings.ReplaceAll(usage, "`", "")
	takesValue := doc != nil && doc.TakesValue()
	if takesValue && placeholder == "" {
		placeholder = "VALUE"
	}
	names := slices.Clone(f.Names())
	slices.SortStableFunc(names, func(a, b string) int { return len(a) - len(b) })
	var tag []string
	for _, n := range names {
		dash := "--"
		if len(n) == 1 {
			dash = "-"
		}
		t := roff.Bold(dash + n)
		if takesValue {
			sep := "="
			if len(n) == 1 {
				sep = " "
			}
			t += roff.Text(sep) + roff.Italic(placeholder)
		}
		tag = append(tag, t)
	}
	b.WriteString(".TP\n" + strings.Join(tag, ", ") + roff.Text(note) + "\n")
	text := prose(sentence(usage))
	if takesValue {
		if d, ok := f.(interface{ GetDefaultText() string }); ok && d.GetDefaultText() != "" {
			text += " " + roff.Text("Default: ") + prose(d.GetDefaultText()) + "."
		}
	}
	if text != "" {
		b.WriteString(text + "\n")
	}
}

// argsUsage sets a command's arguments for a synopsis: words in capitals
// (what the user supplies) in italics, literal words in bold.
func argsUsage(s string) string {
	word := regexp.MustCompile(`[A-Za-z][A-Za-z0-9_-]*`)
	var b strings.Builder
	last := 0
	for _, m := range word.FindAllStringIndex(s, -1) {
		b.WriteString(roff.Text(s[last:m[0]]))
		w := s[m[0]:m[1]]
		if strings.ToUpper(w) == w {
			b.WriteString(roff.Italic(w))
		} else {
			b.WriteString(roff.Bold(w))
		}
		last = m[1]
	}
	b.WriteString(roff.Text(s[last:]))
	return b.String()
}

// sentence starts s with a capital letter and ends it with a full stop,
// unless it starts with an option ("-v: ...").
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return s
	}
	first, _, _ := strings.Cut(s, " ")
	if r, n := utf8.DecodeRuneInString(s); unicode.IsLower(r) && !strings.ContainsAny(first, "_-") {
		s = string(unicode.ToUpper(r)) + s[n:]
	}
	if !strings.HasSuffix(s, ".") && !strings.HasSuffix(s, ")") {
		s += "."
	} else if strings.HasSuffix(s, ")") && !strings.HasSuffix(s, ".)") {
		s += "."
	}
	return s
}

// prose escapes text for a filled line, setting the words a user types
// as they must be typed: options ("--keep"), paths and words with "=" get
// minus signs, not hyphens.
func prose(s string) string {
	literal := regexp.MustCompile(`(^|[\s("'])(-{1,2}[A-Za-z0-9][A-Za-z0-9=_-]*|[~$./A-Za-z0-9_{}-]*[/=][^\s,;)"']*)`)
	var b strings.Builder
	last := 0
	for _, m := range literal.FindAllStringSubmatchIndex(s, -1) {
		start, end := m[4], m[5]
		b.WriteString(roff.Piece(s[last:start], false))
		b.WriteString(`\%` + roff.Piece(s[start:end], true))
		last = end
	}
	b.WriteString(roff.Piece(s[last:], false))
	return roff.Protect(b.String())
}

// description sets a command's long description: its paragraphs filled,
// a line that starts with a label ("bash: ...") on a line of its own.
func description(s string) string {
	label := regexp.MustCompile(`^[A-Za-z]+:\s`)
	var b strings.Builder
	for _, para := range strings.Split(s, "\n\n") {
		if strings.TrimSpace(para) == "" {
			continue
		}
		b.WriteString(".PP\n")
		afterLabel := false
		for i, line := range strings.Split(para, "\n") {
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			isLabel := label.MatchString(line)
			if i > 0 && (isLabel || afterLabel) {
				b.WriteString(".br\n")
			}
			afterLabel = isLabel
			b.WriteString(prose(line) + "\n")
		}
	}
	return b.String()
}

// manDescription is the page's DESCRIPTION.
func manDescription() string {
	return para(
		"popfetch fetches mail from POP3 servers and delivers it into a Maildir, an mbox file, a mail delivery agent (MDA) "+
			"or an LMTP server. It reads its accounts from a TOML file (see CONFIGURATION), connects over TLS unless an "+
			"account says otherwise (POP3S on port 995, or STLS on port 110), and keeps the UIDs of the messages it "+
			"delivered, so that it fetches only new ones, also from accounts that leave their mail on the server.",
		"popfetch never loses mail. A message is deleted from the server only after it is safe on this machine: "+
			"written and fsync'd into the Maildir or mbox, accepted by the MDA with exit status 0, or by every LMTP "+
			"recipient; and after its UID is committed to the UID store. Whenever popfetch or the machine stops, "+
			"nothing is lost and a Maildir gets no message twice; an mbox, an MDA or an LMTP server may get the "+
			"messages it took since the last commit again (at most one batch, 64 messages).",
		"It runs three ways: once, from a shell or from cron (popfetch, the same as popfetch fetch); as a daemon "+
			"that polls many accounts, each at its own interval (popfetch daemon, or fetchmail's popfetch -d 300); and "+
			"under systemd, as a service or a timer (see EXAMPLES).",
		"Its options, exit codes and ways follow fetchmail(1)'s where they can, so that cron lines and scripts "+
			"written for fetchmail keep working; popfetch import converts a fetchmail, mpop or getmail6 configuration, "+
			"and what those tools fetched before.",
		"Options may follow the command and the account names: popfetch work -v is popfetch -v work. "+
			"A -- ends the options.",
	)
}

// manMiddle is what comes between CONFIGURATION and ENVIRONMENT.
func manMiddle() string {
	return ".SH SIGNALS\n" + tagged(
		"SIGTERM, SIGINT", "The first asks for a clean stop: the message in progress is finished, delivered and "+
			"committed, and no new one is fetched. A second signal, or 8 seconds without the stop being done, "+
			"aborts the polls still running; their messages that were not committed stay on the server. "+
			"A one-shot run that was stopped exits 130; the daemon exits 0, within 10 seconds.",
		"SIGHUP", "The daemon reads its configuration again: accounts added are polled, accounts removed are no "+
			"longer, changed ones start afresh. A configuration with errors is reported and the running one kept. "+
			"systemctl reload popfetch sends it. A one-shot run is ended by it at once, as by a crash: "+
			"nothing is lost, a message may be delivered twice.",
		"SIGUSR1", "The daemon polls every account now, whatever their intervals say (as fetchmail does when woken). "+
			"A one-shot run ignores it.",
	) + ".SH FILES\n" + tagged(
		"~/.config/popfetch/config.toml", "The configuration ($XDG_CONFIG_HOME/popfetch/config.toml; --config, "+
			"$POPFETCH_CONFIG). It must not be readable by group or others when it holds a secret.",
		"~/.local/state/popfetch/", "The state directory ($XDG_STATE_HOME/popfetch; --state-dir, $POPFETCH_STATE_DIR), "+
			"created mode 700. It holds the files below.",
		"STATE/uids.db", "The UID store (bbolt): the UIDs of the messages delivered, per server, port and user, and "+
			"deliveries an interrupted run left pending. One popfetch uses it at a time; another waits --lock-timeout "+
			"for it, then exits 8. popfetch uidl reads and repairs it.",
		"STATE/daemon.pid", "The running daemon's process ID, locked (flock) while it runs: a second daemon on the same "+
			"state directory exits 8.",
		"STATE/daemon.sock", "Where a running daemon answers popfetch status (mode 600).",
		"STATE/daemon.log", "The log of a daemon that popfetch -d put in the background, unless -L or --syslog "+
			"sends it elsewhere (appended to; mode 600).",
		"STATE/status.json", "The daemon's last status, rewritten once a minute and when it stops: popfetch status "+
			"shows it when no daemon runs.",
		"STATE/oauth2/ACCOUNT.json", "An account's OAuth2 refresh token (mode 600), written by popfetch auth, unless "+
			"refresh_token_file says otherwise.",
		"~/.netrc", "Passwords for accounts that set no password key ($NETRC; mode 600).",
		"MBOX.lock", "The dot-lock popfetch holds while it appends to an mbox.",
		"~/.fetchmailrc, ~/.fetchids, ~/.mpoprc, ~/.config/mpop/config, ~/.mpop_uidls/, ~/.getmail/getmailrc, "+
			"~/.config/getmail/getmailrc", "What popfetch import reads by default.",
	)
}

// manEnvironment lists the variables popfetch reads besides those of
// the options (which writeManPage lists from the flags).
func manEnvironment() string {
	return tagged(
		"XDG_CONFIG_HOME", "Where the configuration is looked for, when --config and POPFETCH_CONFIG are not "+
			"given: $XDG_CONFIG_HOME/popfetch/config.toml; used only if it is an absolute path, else ~/.config.",
		"XDG_STATE_HOME", "Where the state directory is, when --state-dir and POPFETCH_STATE_DIR are not given: "+
			"$XDG_STATE_HOME/popfetch; used only if it is an absolute path, else ~/.local/state.",
		"HOME", "The home directory: ~ in paths and commands of the configuration, and the files popfetch import reads.",
		"NETRC", "The netrc file to read passwords from, instead of ~/.netrc.",
		"USER", "The default recipient (%T of mda, the LMTP recipient) when the user database does not name the user.",
		"JOURNAL_STREAM", "Set by systemd: when standard error is the journal, --log-format auto writes "+
			"lines with journal priorities, without times.",
		"NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID", "Set by systemd for a Type=notify service: the daemon tells "+
			"systemd when it is ready, reloading and stopping, and feeds its watchdog while its scheduler answers.",
		"INVOCATION_ID", "Set by systemd for every service: with it (or NOTIFY_SOCKET), -d stays in the "+
			"foreground, as -N asks, since systemd is the one that runs popfetch in the background.",
		"BROWSER", "The browser popfetch auth starts for the loopback flow (a program, given the URL; the "+
			"first of a colon-separated list); without it, xdg-open in a graphical session.",
		"DISPLAY, WAYLAND_DISPLAY", "A graphical session: popfetch auth starts a browser with xdg-open "+
			"(unless --no-browser); without one, it shows the URL to open elsewhere.",
		"password_env", "An account with password_env = \"NAME\" reads its password from the variable NAME.",
	)
}

// manEnd is EXAMPLES and what follows.
func manEnd() string {
	return ".SH EXAMPLES\n" +
		roff.Example("Fetch every account once; then one account, a line per message:",
			"popfetch", "popfetch -v work") +
		roff.Example("Count new mail without fetching it, in a script (exit 0: there is some; 1: none):",
			"if popfetch check work; then notify-send 'new mail'; fi") +
		roff.Example("From cron, every 5 minutes, quiet unless something failed (cron mails what a job prints; "+
			"popfetch exits 1 when there was no mail, which cron ignores):",
			"*/5 * * * * popfetch -q") +
		roff.Example("As a daemon, polling every account every 5 minutes (or at its own interval), as fetchmail -d 300 does; "+
			"then what it is doing, a configuration read again, and every account polled now:",
			"popfetch daemon --interval 5m", "popfetch -d 300", "popfetch status",
			"kill -HUP $(cat ~/.local/state/popfetch/daemon.pid)",
			"kill -USR1 $(cat ~/.local/state/popfetch/daemon.pid)") +
		roff.Example("Under systemd's user manager, with the units make install puts in "+
			"/usr/local/lib/systemd/user (or those in docs/systemd): the daemon, kept running while you are logged out; "+
			"or instead a run every 5 minutes by a timer:",
			"systemctl --user enable --now popfetch.service", "loginctl enable-linger \"$USER\"",
			"journalctl --user -u popfetch", "systemctl --user reload popfetch",
			"systemctl --user enable --now popfetch.timer") +
		roff.Example("Keep mode: leave mail on the server and fetch each message once, deleting it 30 days after it "+
			"was fetched (in the account's table); or keep everything for one run, whatever the configuration says:",
			"keep = true", "delete_after = \"30d\"", "", "popfetch --keep work") +
		roff.Example("See what is on the server, and fetch some messages again:",
			"popfetch list --headers work", "popfetch uidl export work > uids.txt",
			"popfetch uidl forget work UID1 UID2", "popfetch uidl forget --all work") +
		roff.Example("Migrate from fetchmail, with what it has fetched already, so that mail it left on the server "+
			"is not fetched again; check the result; the same from mpop or getmail6:",
			"popfetch import --uids -o ~/.config/popfetch/config.toml fetchmail",
			"popfetch config check",
			"popfetch import mpop ~/.mpoprc",
			"popfetch import getmail ~/.getmail/getmailrc-work ~/.getmail/getmailrc-home") +
		roff.Example("Shell completion, if make install did not put it in place:",
			"popfetch completion bash > ~/.local/share/bash-completion/completions/popfetch") +
		".SH SECURITY\n" + para(
		"TLS is required unless an account sets tls = \"none\"; certificates are verified against the system's roots "+
			"or the account's ca_file, or pinned with tls_fingerprint; TLS 1.2 is the least accepted. With STLS, "+
			"popfetch stops if the server does not offer it; it never falls back to plain text.",
		"A password, a digest or a token is never sent over an unencrypted connection unless the account says "+
			"allow_insecure_auth = true. A configuration file that holds a secret and is readable by group or others "+
			"is refused (exit 6). -vv traces the protocol, POP3 and an [account.imap] target's IMAP (its lines labelled "+
			"imap:), with passwords, tokens and authentication data redacted and messages shown by their size only.",
		"Everything a server sends is distrusted: lines and reads are bounded, sizes checked against what arrives, "+
			"text shown to you is stripped of control characters. An MDA is run without a shell, and the "+
			"envelope sender and recipient put into its arguments are neutralised.",
	) +
		".SH STANDARDS\n" + para(
		"RFC 1939 (POP3), RFC 2449 (CAPA, PIPELINING), RFC 2595 (STLS), RFC 5034 (AUTH), RFC 3206 (response codes), "+
			"RFC 2033 (LMTP), RFC 8628 (OAuth 2.0 device authorization), RFC 7628 (OAUTHBEARER).",
	) +
		".SH \"SEE ALSO\"\n.PP\n" +
		".BR fetchmail (1),\n.BR mpop (1),\n.BR getmail (1),\n.BR procmail (1),\n.BR crontab (5),\n" +
		".BR systemd.service (5),\n.BR systemd.timer (5)\n" +
		".PP\n" + prose("The documents in docs/ of the source: auth.md, daemon.md, migrating.md, reliability.md, "+
		"security.md, at https://github.com/popfetch/popfetch.") + "\n"
}

// para sets each of texts as a paragraph.
func para(texts ...string) string {
	var b strings.Builder
	for _, t := range texts {
		b.WriteString(".PP\n" + prose(t) + "\n")
	}
	return b.String()
}

// tagged sets pairs of tag and text as tagged paragraphs, the tag bold.
func tagged(pairs ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		var tags []string
		for _, t := range strings.Split(pairs[i], ", ") {
			tags = append(tags, roff.Bold(t))
		}
		b.WriteString(".TP\n" + strings.Join(tags, ", ") + "\n" + prose(pairs[i+1]) + "\n")
	}
	return b.String()
}
