package migrate

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
)

// fetchmail's keywords and how many arguments each takes: -1 is a list
// that runs to the next keyword.
var fetchmailArgs = map[string]int{
	// server options
	"via": 1, "proto": 1, "protocol": 1, "port": 1, "service": 1, "auth": 1, "authenticate": 1,
	"timeout": 1, "interval": 1, "principal": 1, "esmtpname": 1, "esmtppassword": 1,
	"interface": 1, "monitor": 1, "plugin": 1, "plugout": 1, "tracepolls": 0, "envelope": 1,
	"qvirtual": 1, "aka": -1, "localdomains": -1, "dns": 0, "checkalias": 0, "uidl": 0,
	"bad-header": 1,
	// user options
	"user": 1, "username": 1, "pass": 1, "password": 1, "is": -1, "to": -1, "there": 0, "here": 0,
	"folder": -1, "smtphost": -1, "smtphosts": -1, "fetchdomains": -1, "smtpaddress": 1, "smtpname": 1,
	"antispam": -1, "mda": 1, "bsmtp": 1, "lmtp": 0, "preconnect": 1, "postconnect": 1,
	"limit": 1, "warnings": 1, "batchlimit": 1, "fetchlimit": 1, "fetchsizelimit": 1, "fastuidl": 1,
	"expunge": 1, "sslcert": 1, "sslkey": 1, "sslproto": 1, "sslcertfile": 1, "sslcertpath": 1,
	"sslcommonname": 1, "sslfingerprint": 1, "properties": 1,
	"keep": 0, "flush": 0, "fetchall": 0, "rewrite": 0, "forcecr": 0, "stripcr": 0, "pass8bits": 0,
	"dropstatus": 0, "dropdelivered": 0, "mimedecode": 0, "idle": 0, "limitflush": 0, "ssl": 0,
	"sslcertck": 0,
}

// fetchmail's noise words, and its statement starters.
var (
	fetchmailNoise = map[string]bool{"and": true, "with": true, "has": true, "wants": true, "options": true}
	fetchmailStart = map[string]bool{"poll": true, "skip": true, "defaults": true, "set": true}
)

type fmOpt struct {
	key  string
	no   bool
	args []string
}

type fmEntry struct {
	name     string
	skip     bool
	defaults []fmOpt // the defaults entry in force when this one began
	opts     []fmOpt // server options
	users    [][]fmOpt
}

// Fetchmail converts a .fetchmailrc. Each user of each poll entry becomes
// an account; skip entries are written commented out; IMAP, ETRN and
// ODMR entries are left out with a note. path is used in messages and to
// find the UID file (set idfile, else ~/.fetchids beside it).
func Fetchmail(path, text, home string) (*Result, error) {
	toks, err := fetchmailTokens(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	res := &Result{Tool: "fetchmail", Sources: []string{path}}
	f, err := fetchmailEntries(path, toks, home, res)
	if err != nil {
		return nil, err
	}
	taken := map[string]bool{}
	for _, e := range f.entries {
		users := e.users
		if len(users) == 0 {
			users = [][]fmOpt{nil} // fetchmail then logs in as the local user
		}
		for _, u := range users {
			opts := append(append(append([]fmOpt(nil), e.defaults...), e.opts...), u...)
			a, skip := fetchmailAccount(e, opts, home)
			if skip {
				res.Notes = append(res.Notes, a.Notes...)
				continue
			}
			name := e.name
			if len(users) > 1 {
				name = a.User + "@" + e.name
			}
			a.Name = accountName(name, taken)
			a.Keys = append([]Key{{"name", a.Name}}, a.Keys...)
			a.Disabled = e.skip
			if e.skip {
				a.note("fetchmail: skip %s: fetchmail polled this entry only when named on its command line; it is converted but commented out.", e.name)
			}
			if f.daemon > 0 {
				a.set("interval", seconds(f.daemon*a.pollEvery))
			}
			if f.invis {
				a.set("add_received", false)
			}
			a.UIDFile = f.idfile
			res.Accounts = append(res.Accounts, a)
		}
	}
	if len(res.Accounts) == 0 {
		return nil, fmt.Errorf("%s: no POP3 poll entries", path)
	}
	noteRelativePaths(res)
	return res, nil
}

// fmFile is what a .fetchmailrc's words say: its poll entries and the
// settings that apply to all of them.
type fmFile struct {
	entries []*fmEntry
	daemon  int    // set daemon: the interval, in seconds
	idfile  string // set idfile, else ~/.fetchids
	invis   bool   // set invisible
}

// fetchmailEntries reads the words of the .fetchmailrc at path into poll
// entries, each with the defaults entries before it; notes go to res.
func fetchmailEntries(path string, toks []string, home string, res *Result) (*fmFile, error) {
	var (
		entries  []*fmEntry
		defaults []fmOpt
		cur      *fmEntry
		inUser   bool
		daemon   int
		idfile   = filepath.Join(home, ".fetchids")
		invis    bool
		// inDefaults: the options read belong to a defaults entry.
		inDefaults bool
	)
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		lt := strings.ToLower(t)
		switch {
		case fetchmailNoise[lt]:
			continue
		case lt == "set":
			if i+1 >= len(toks) {
				return nil, fmt.Errorf("%s: set at the end of the file", path)
			}
			i++
			no := false
			what := strings.ToLower(toks[i])
			if what == "no" && i+1 < len(toks) {
				no, i = true, i+1
				what = strings.ToLower(toks[i])
			}
			arg := ""
			switch what {
			case "daemon", "logfile", "idfile", "postmaster", "properties", "pidfile":
				if i+1 >= len(toks) {
					return nil, fmt.Errorf("%s: set %s needs a value", path, what)
				}
				i++
				arg = toks[i]
			}
			switch what {
			case "daemon":
				n, err := strconv.Atoi(arg)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("%s: set daemon %q: want seconds", path, arg)
				}
				daemon = n
			case "idfile":
				idfile = expandHome(arg, home)
			case "invisible":
				invis = !no
			case "logfile":
				res.Notes = append(res.Notes, fmt.Sprintf("fetchmail: set logfile %s: not converted: popfetch takes it on the command line, as fetchmail's -L: popfetch -L %s (with -d, the daemon's log goes to daemon.log in the state directory without it).", arg, arg))
			case "syslog":
				res.Notes = append(res.Notes, "fetchmail: set syslog: not converted: popfetch takes it on the command line, as fetchmail's --syslog: popfetch --syslog (under systemd the journal, which syslog also reads, has the log anyway).")
			case "postmaster", "bouncemail", "spambounce", "softbounce":
				res.Notes = append(res.Notes, fmt.Sprintf("fetchmail: set %s%s: not converted: popfetch never bounces mail; a message it cannot deliver stays on the server and the run exits 10.", noPrefix(no), what))
			case "showdots":
				res.Notes = append(res.Notes, "fetchmail: set showdots: popfetch shows a progress line on a terminal by itself (-q turns it off).")
			default:
				res.Notes = append(res.Notes, fmt.Sprintf("fetchmail: set %s%s %s: not converted: popfetch has no such setting.", noPrefix(no), what, arg))
			}
		case lt == "defaults":
			// Its options apply to the poll entries that follow it.
			defaults, inDefaults, inUser = nil, true, false
			cur = &fmEntry{}
		case lt == "poll" || lt == "skip":
			if i+1 >= len(toks) {
				return nil, fmt.Errorf("%s: %s without a server name", path, lt)
			}
			i++
			cur = &fmEntry{name: toks[i], skip: lt == "skip", defaults: defaults}
			entries = append(entries, cur)
			inDefaults, inUser = false, false
		default:
			if cur == nil {
				return nil, fmt.Errorf("%s: %q before the first poll entry", path, t)
			}
			o := fmOpt{key: lt}
			if lt == "no" && i+1 < len(toks) {
				i++
				o.no, o.key = true, strings.ToLower(toks[i])
			} else if n, ok := fetchmailArgs[strings.TrimPrefix(lt, "no")]; ok && n == 0 && strings.HasPrefix(lt, "no") {
				o.no, o.key = true, lt[2:] // nokeep, nofetchall, ...
			}
			n, known := fetchmailArgs[o.key]
			if !known {
				return nil, fmt.Errorf("%s: unknown keyword %q", path, t)
			}
			switch {
			case o.key == "envelope" && i+2 < len(toks) && isNumber(toks[i+1]):
				o.args = append(o.args, toks[i+1], toks[i+2])
				i += 2
			case n == -1:
				for i+1 < len(toks) && !isFetchmailKeyword(toks[i+1]) {
					i++
					o.args = append(o.args, toks[i])
				}
			case o.no && (o.key == "envelope" || o.key == "dns" || o.key == "uidl"):
			default:
				for k := 0; k < n; k++ {
					if i+1 >= len(toks) {
						return nil, fmt.Errorf("%s: %s needs a value", path, o.key)
					}
					i++
					o.args = append(o.args, toks[i])
				}
			}
			if o.key == "user" || o.key == "username" {
				inUser = true
				cur.users = append(cur.users, nil)
			}
			if inDefaults {
				defaults = append(defaults, o)
				continue
			}
			if inUser {
				cur.users[len(cur.users)-1] = append(cur.users[len(cur.users)-1], o)
			} else {
				cur.opts = append(cur.opts, o)
			}
		}
	}
	return &fmFile{entries: entries, daemon: daemon, idfile: idfile, invis: invis}, nil
}

func noPrefix(no bool) string {
	if no {
		return "no "
	}
	return ""
}

func isNumber(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

func isFetchmailKeyword(t string) bool {
	lt := strings.ToLower(t)
	if _, ok := fetchmailArgs[lt]; ok {
		return true
	}
	return fetchmailStart[lt] || fetchmailNoise[lt] || lt == "no"
}

// fetchmailAccount converts the options of one user of a poll entry; skip
// is set for an entry popfetch cannot poll (not POP3).
func fetchmailAccount(e *fmEntry, opts []fmOpt, home string) (*Account, bool) {
	a := &Account{Server: e.name, pollEvery: 1}
	st := &fmState{certck: true}
	for _, o := range opts {
		if skip := st.apply(a, e, o, home); skip {
			return a, true
		}
	}
	st.finish(a, home)
	return a, false
}

// fmState is what a poll entry's options set that becomes keys only once
// all are read: TLS, the port, the user, the limits, the target.
type fmState struct {
	ssl, lmtp, limitflush bool
	sslproto              *string
	limit                 int64
	smtphost              []string
	mda, bsmtp            string
	user                  string
	locals                []string
	port                  int
	certck                bool
}

// not notes an option that did not convert, and why.
func (st *fmState) not(a *Account, o fmOpt, why string) {
	s := o.key
	if o.no {
		s = "no " + s
	}
	if len(o.args) > 0 {
		s += " " + strings.Join(o.args, " ")
	}
	a.note("fetchmail: %s: not converted: %s", s, why)
}

// apply converts one option, by the first of its kinds that takes it;
// skip says the entry is not a POP3 one.
func (st *fmState) apply(a *Account, e *fmEntry, o fmOpt, home string) (skip bool) {
	arg := ""
	if len(o.args) > 0 {
		arg = o.args[0]
	}
	for _, convert := range []func(*Account, *fmEntry, fmOpt, string, string) (handled, skip bool){
		st.serverOption, st.deliveryOption, st.policyOption, st.tlsOption,
	} {
		if handled, skip := convert(a, e, o, arg, home); handled {
			return skip
		}
	}
	st.unconverted(a, o)
	return false
}

// serverOption converts the options of the server and the login: via,
// proto, port, auth, the timeouts, user and pass. It reports whether the
// option was one of them, and skip for an entry that is not POP3.
func (st *fmState) serverOption(a *Account, e *fmEntry, o fmOpt, arg, home string) (handled, skip bool) {
	switch o.key {
	case "via":
		a.Server = arg
	case "proto", "protocol":
		switch strings.ToLower(arg) {
		case "pop3", "auto":
		case "apop":
			a.set("auth", "apop")
		case "imap", "etrn", "odmr":
			a.note("fetchmail: poll %s proto %s: left out: popfetch fetches POP3 only.", e.name, arg)
			return true, true
		default:
			a.note("fetchmail: poll %s proto %s: left out: popfetch speaks plain POP3 (RFC 1939), not %s.", e.name, arg, arg)
			return true, true
		}
	case "port", "service":
		p, err := strconv.Atoi(arg)
		if err != nil {
			st.not(a, o, "not a port number (service names are not looked up)")
			return true, false
		}
		st.port = p
	case "auth", "authenticate":
		switch strings.ToLower(arg) {
		case "any":
		case "password":
			a.set("auth", "user")
		case "cram-md5":
			a.set("auth", "cram-md5")
		case "external":
			a.set("auth", "external")
		case "apop":
			a.set("auth", "apop")
		case "oauthbearer":
			a.set("auth", "oauthbearer")
		case "xoauth2":
			a.set("auth", "xoauth2")
		default:
			st.not(a, o, "popfetch has no "+arg+" (it has USER/PASS, APOP, PLAIN, LOGIN, CRAM-MD5, SCRAM, XOAUTH2, OAUTHBEARER and EXTERNAL); auth = \"auto\" picks the strongest offered.")
		}
	case "timeout":
		if n, err := strconv.Atoi(arg); err == nil && n > 0 {
			a.set("timeout", seconds(n))
		} else {
			st.not(a, o, "not a number of seconds")
		}
	case "interval":
		if n, err := strconv.Atoi(arg); err == nil && n > 0 {
			a.pollEvery = n
		}
	case "uidl":
		// popfetch always uses UIDL.
	case "user", "username":
		st.user = arg
	case "pass", "password":
		a.set("password", arg)
	default:
		return false, false
	}
	return true, false
}

// deliveryOption converts where mail goes: is, mda, bsmtp, lmtp and
// smtphost.
func (st *fmState) deliveryOption(a *Account, e *fmEntry, o fmOpt, arg, home string) (handled, skip bool) {
	switch o.key {
	case "is", "to":
		for _, l := range o.args {
			if l != "here" && l != "there" {
				st.locals = append(st.locals, l)
			}
		}
	case "there", "here":
	case "mda":
		st.mda = arg
	case "bsmtp":
		st.bsmtp = arg
	case "lmtp":
		st.lmtp = !o.no
	case "smtphost", "smtphosts":
		st.smtphost = o.args
	default:
		return false, false
	}
	return true, false
}

// policyOption converts keep, fetchall and the limits.
func (st *fmState) policyOption(a *Account, e *fmEntry, o fmOpt, arg, home string) (handled, skip bool) {
	switch o.key {
	case "keep":
		a.set("keep", !o.no)
	case "fetchall":
		a.set("fetch_all", !o.no)
	case "limit":
		if n, err := strconv.ParseInt(arg, 10, 64); err == nil {
			st.limit = n
		}
	case "limitflush":
		st.limitflush = !o.no
	case "fetchlimit":
		if n, err := strconv.Atoi(arg); err == nil && n > 0 {
			a.set("fetch_limit", n)
		}
	default:
		return false, false
	}
	return true, false
}

// tlsOption converts the ssl options.
func (st *fmState) tlsOption(a *Account, e *fmEntry, o fmOpt, arg, home string) (handled, skip bool) {
	switch o.key {
	case "ssl":
		st.ssl = !o.no
	case "sslproto":
		s := arg
		st.sslproto = &s
	case "sslcertck":
		st.certck = !o.no
	case "sslcertfile":
		a.set("ca_file", expandHome(arg, home))
	case "sslcert":
		a.set("client_cert", expandHome(arg, home))
	case "sslkey":
		a.set("client_key", expandHome(arg, home))
	case "sslcommonname":
		a.set("tls_server_name", arg)
	case "sslfingerprint":
		if isSHA256(arg) {
			a.set("tls_fingerprint", arg)
		} else {
			st.not(a, o, "this is an MD5 fingerprint; popfetch pins SHA-256 ones: openssl s_client -connect HOST:995 </dev/null | openssl x509 -noout -fingerprint -sha256")
		}
	case "sslcertpath":
		st.not(a, o, "ca_file takes one PEM file: concatenate the certificates you need into one, or leave it out for the system's roots.")
	default:
		return false, false
	}
	return true, false
}

// unconverted notes an option popfetch has no key for, and why.
func (st *fmState) unconverted(a *Account, o fmOpt) {
	switch o.key {
	case "envelope", "qvirtual", "aka", "localdomains", "dns", "checkalias":
		if !o.no {
			st.not(a, o, "multidrop: popfetch delivers each mailbox to one recipient and does not read recipients from the header.")
		}
	case "preconnect", "postconnect":
		st.not(a, o, "run it before or after popfetch in the cron job or a systemd ExecStartPre=/ExecStopPost=.")
	case "plugin", "plugout":
		st.not(a, o, "popfetch connects by TCP itself; for a tunnel, forward a local port (ssh -L) and poll 127.0.0.1.")
	case "folder", "idle", "expunge":
		if !o.no {
			st.not(a, o, "IMAP only, or not needed: popfetch deletes at QUIT, after every message is safe.")
		}
	case "flush":
		if !o.no {
			st.not(a, o, "popfetch deletes only messages it has delivered; to expire kept mail use delete_after.")
		}
	case "rewrite", "forcecr", "stripcr", "pass8bits", "dropstatus", "dropdelivered", "mimedecode":
		if !o.no {
			st.not(a, o, "popfetch delivers each message as the server sent it (line ends made LF), without rewriting it.")
		}
	case "batchlimit", "fetchsizelimit", "fastuidl", "warnings", "antispam", "smtpaddress", "smtpname",
		"fetchdomains", "interface", "monitor", "principal", "esmtpname", "esmtppassword", "tracepolls",
		"properties", "bad-header":
		st.not(a, o, "popfetch has no equivalent.")
	default:
		st.not(a, o, "popfetch has no equivalent.")
	}
}

// finish adds the user, the connection keys, the limits and the delivery
// target, which depend on all the options.
func (st *fmState) finish(a *Account, home string) {
	if st.user == "" {
		st.user = loginName()
		a.note("fetchmail: no user: fetchmail logged in with your login name, %s.", st.user)
	}
	a.User = st.user
	// TLS: st.ssl is POP3S; otherwise fetchmail used STLS when the server
	// offered it, unless st.sslproto '' turned TLS off.
	tlsKeys := []Key{}
	switch {
	case st.ssl:
		tlsKeys = append(tlsKeys, Key{"tls", "implicit"})
		if st.port == 0 {
			st.port = 995
		}
	case st.sslproto != nil && *st.sslproto == "":
		tlsKeys = append(tlsKeys, Key{"tls", "none"}, Key{"allow_insecure_auth", true})
		a.note("fetchmail: sslproto '': TLS was off, so the password goes over the network in the clear; popfetch needs allow_insecure_auth = true for that. Use tls = \"starttls\" or \"implicit\" if the server offers it.")
		if st.port == 0 {
			st.port = 110
		}
	default:
		tlsKeys = append(tlsKeys, Key{"tls", "starttls"})
		a.note("fetchmail: no ssl: fetchmail used STLS when the server offered it; popfetch requires it (tls = \"starttls\") and refuses to log in without. If the server offers none, use tls = \"implicit\" on port 995, or, on a trusted network only, tls = \"none\" with allow_insecure_auth = true.")
		if st.port == 0 {
			st.port = 110
		}
	}
	if st.sslproto != nil && *st.sslproto != "" {
		switch strings.ToLower(*st.sslproto) {
		case "tls1.3", "tls1.3+":
			tlsKeys = append(tlsKeys, Key{"tls_min_version", "1.3"})
		case "tls1.2", "tls1.2+", "auto", "tls1+", "tls1.1+", "tls1", "tls1.1":
			// popfetch never goes below TLS 1.2.
		default:
			a.note("fetchmail: sslproto %s: not converted: popfetch speaks TLS 1.2 and 1.3 only (tls_min_version).", *st.sslproto)
		}
	}
	if !st.certck {
		a.note("fetchmail: no sslcertck: not converted: popfetch always verifies the server's certificate; for a self-signed one set ca_file to it, or pin it with tls_fingerprint.")
	}
	a.Port = st.port
	head := []Key{{"server", a.Server}, {"port", st.port}}
	head = append(head, tlsKeys...)
	head = append(head, Key{"user", st.user})
	a.Keys = append(head, a.Keys...)
	// The size st.limit: with st.limitflush, oversized messages were deleted.
	if st.limit > 0 {
		if st.limitflush {
			a.set("delete_larger_than", st.limit)
		} else {
			a.set("size_limit", st.limit)
		}
	}
	if len(st.locals) > 0 && st.locals[0] != "*" {
		a.set("recipient", st.locals[0])
		if len(st.locals) > 1 {
			a.note("fetchmail: is %s: multidrop: popfetch delivers to one recipient, %s.", strings.Join(st.locals, " "), st.locals[0])
		}
	}
	switch {
	case st.mda != "":
		argv, sh := command(st.mda)
		a.setTarget("mda", argv)
		if sh {
			a.note("fetchmail: mda %q ran through /bin/sh; popfetch runs no shell itself, so it calls /bin/sh explicitly, with the sender and recipient as \"$1\" and \"$2\".", st.mda)
		}
	case st.bsmtp != "":
		a.note("fetchmail: bsmtp %s: not converted: popfetch writes no BSMTP; delivering into an mbox instead.", st.bsmtp)
		a.setTarget("mbox", expandHome(st.bsmtp, home))
	case st.lmtp:
		target := "localhost:24"
		if len(st.smtphost) > 0 {
			target = st.smtphost[0]
			if !strings.HasPrefix(target, "/") {
				target = strings.Replace(target, "/", ":", 1)
				if !strings.Contains(target, ":") {
					target += ":24"
				}
			}
		}
		a.setTarget("lmtp", target)
	default:
		a.setTarget("mda", []string{"/usr/sbin/sendmail", "-i", "-f", "%F", "--", "%T"})
		host := "localhost"
		if len(st.smtphost) > 0 {
			host = st.smtphost[0]
		}
		a.note("fetchmail: forwarded by SMTP to %s; popfetch does not speak SMTP, so it hands each message to the local mail system's sendmail, as fetchmail does when no SMTP server listens. For a Maildir or mbox, set maildir or mbox instead of mda.", host)
	}
}

// fetchmailTokens splits an rc file into words: quoted strings (with
// backslash escapes) and bare words; commas, colons and semicolons and
// comments are dropped.
func fetchmailTokens(text string) ([]string, error) {
	var toks []string
	r := []rune(text)
	for i := 0; i < len(r); {
		c := r[i]
		switch {
		case unicode.IsSpace(c) || c == ',' || c == ':' || c == ';':
			i++
		case c == '#':
			for i < len(r) && r[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'':
			q := c
			var b strings.Builder
			i++
			for {
				if i >= len(r) {
					return nil, fmt.Errorf("unterminated string")
				}
				if r[i] == q {
					i++
					break
				}
				if r[i] == '\\' && i+1 < len(r) {
					i++
					switch r[i] {
					case 'n':
						b.WriteRune('\n')
					case 't':
						b.WriteRune('\t')
					case 'r':
						b.WriteRune('\r')
					default:
						b.WriteRune(r[i])
					}
					i++
					continue
				}
				b.WriteRune(r[i])
				i++
			}
			toks = append(toks, b.String())
		default:
			start := i
			for i < len(r) && !unicode.IsSpace(r[i]) && !strings.ContainsRune(",:;#\"'", r[i]) {
				i++
			}
			toks = append(toks, string(r[start:i]))
		}
	}
	return toks, nil
}

// expandHome expands a leading ~/ to home.
func expandHome(p, home string) string {
	if p == "~" {
		return home
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(home, rest)
	}
	return p
}
