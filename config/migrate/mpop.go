package migrate

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Mpop converts an .mpoprc: every
// account becomes a popfetch account; "defaults" and "account NAME :
// OTHER" inheritance are applied first.
func Mpop(path, text, home string) (*Result, error) {
	type mpopAccount struct {
		name    string
		cmds    [][2]string
		parents []string
		own     [][2]string // the commands written under it, not inherited
	}
	var (
		defaults []([2]string)
		accounts []*mpopAccount
		byName   = map[string]*mpopAccount{}
		cur      *mpopAccount
		inDef    bool
	)
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cmd, arg, _ := strings.Cut(line, " ")
		if i := strings.IndexAny(line, " \t"); i >= 0 {
			cmd, arg = line[:i], strings.TrimSpace(line[i+1:])
		}
		arg = mpopUnquote(arg)
		switch cmd {
		case "defaults":
			inDef, cur = true, nil
		case "account":
			inDef = false
			name, parents, _ := strings.Cut(arg, ":")
			name = strings.TrimSpace(name)
			if name == "" {
				return nil, fmt.Errorf("%s:%d: account without a name", path, n+1)
			}
			cur = &mpopAccount{name: name, cmds: append([][2]string(nil), defaults...)}
			for _, p := range strings.Split(parents, ",") {
				if p = strings.TrimSpace(p); p == "" {
					continue
				}
				parent, ok := byName[p]
				if !ok {
					return nil, fmt.Errorf("%s:%d: account %s: no account %q to inherit from", path, n+1, name, p)
				}
				cur.cmds = append(cur.cmds, parent.cmds[len(defaults):]...)
				cur.parents = append(cur.parents, p)
			}
			accounts = append(accounts, cur)
			byName[name] = cur
		default:
			switch {
			case inDef:
				defaults = append(defaults, [2]string{cmd, arg})
			case cur != nil:
				cur.cmds = append(cur.cmds, [2]string{cmd, arg})
				cur.own = append(cur.own, [2]string{cmd, arg})
			default:
				return nil, fmt.Errorf("%s:%d: %s before the first account or defaults", path, n+1, cmd)
			}
		}
	}
	res := &Result{Tool: "mpop", Sources: []string{path}}
	taken := map[string]bool{}
	converted := map[string]*Account{}
	for _, ma := range accounts {
		a := convertMpopAccount(ma.cmds, home)
		if target := mpopAliasOf(ma.name, ma.parents, a, converted); target != nil {
			// "account default : NAME": the account a bare "mpop"
			// polls, NAME's mailbox under a second name. popfetch
			// polls every account when none is named; two would poll
			// one mailbox (and import its UIDs twice).
			target.note("mpop: account %s : %s made this mpop's default account (the one \"mpop\" polls without arguments); it is the same mailbox, so it is not a second account here: \"popfetch\" without arguments polls every account, \"popfetch fetch %s\" this one.",
				ma.name, strings.Join(ma.parents, ", "), target.Name)
			for _, c := range ma.own {
				target.note("mpop: account %s: %s %s: not converted: it was set for the default alias only.", ma.name, c[0], c[1])
			}
			continue
		}
		a.Name = accountName(ma.name, taken)
		a.Keys = append([]Key{{"name", a.Name}}, a.Keys...)
		converted[ma.name] = a
		res.Accounts = append(res.Accounts, a)
	}
	if len(res.Accounts) == 0 {
		return nil, fmt.Errorf("%s: no accounts", path)
	}
	noteRelativePaths(res)
	return res, nil
}

// mpopAliasOf returns the converted account that the mpop account name
// only aliases: an account named "default" that inherits from accounts
// above it and reaches the same mailbox (server, port and user) as one of
// them. nil if name is not such an alias.
func mpopAliasOf(name string, parents []string, a *Account, converted map[string]*Account) *Account {
	if name != "default" {
		return nil
	}
	for i := len(parents) - 1; i >= 0; i-- {
		p := converted[parents[i]]
		if p != nil && p.Server == a.Server && p.Port == a.Port && p.User == a.User {
			return p
		}
	}
	return nil
}

// mpopUnquote removes the double quotes around an mpop argument, with its
// backslash escapes.
func mpopUnquote(s string) string {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		if s[i] == '\\' && i+1 < len(s)-1 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func mpopOn(arg string) bool { return arg == "" || arg == "on" }

func mpopSize(arg string) (int64, bool) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(arg, "k"):
		mult, arg = 1024, strings.TrimSuffix(arg, "k")
	case strings.HasSuffix(arg, "m"):
		mult, arg = 1024*1024, strings.TrimSuffix(arg, "m")
	}
	n, err := strconv.ParseInt(arg, 10, 64)
	return n * mult, err == nil && n >= 0
}

// convertMpopAccount converts one mpop account's commands, in the order
// given.
func convertMpopAccount(cmds [][2]string, home string) *Account {
	a := &Account{}
	st := &mpopState{starttls: true, certcheck: true, uidls: filepath.Join(home, ".mpop_uidls", "%U_at_%H")}
	for _, c := range cmds {
		st.apply(a, c[0], c[1], home)
	}
	st.finish(a)
	return a
}

// mpopState is what an mpop account's commands set that becomes keys only
// once all are read: TLS, the port, the UIDs file, certificate checks.
type mpopState struct {
	tls, starttls bool
	port          int
	uidls         string
	certcheck     bool
}

func (st *mpopState) not(a *Account, cmd, arg, why string) {
	a.note("mpop: %s %s: not converted: %s", cmd, arg, why)
}

// apply converts one command.
func (st *mpopState) apply(a *Account, cmd, arg, home string) {
	switch cmd {
	case "host":
		a.Server = arg
	case "port":
		if p, err := strconv.Atoi(arg); err == nil {
			st.port = p
		}
	case "user":
		a.User = arg
	case "password":
		a.set("password", arg)
	case "passwordeval":
		argv, _ := command(arg)
		a.set("password_command", argv)
	case "auth":
		switch arg {
		case "", "on":
			a.set("auth", "auto")
		case "user", "plain", "apop", "cram-md5", "scram-sha-1", "scram-sha-256", "xoauth2", "oauthbearer", "external", "login":
			a.set("auth", arg)
		default:
			st.not(a, cmd, arg, "popfetch has no such mechanism; auth = \"auto\" picks the strongest offered.")
		}
	case "tls":
		st.tls = mpopOn(arg)
	case "tls_starttls":
		st.starttls = mpopOn(arg)
	case "tls_trust_file":
		if arg != "" && arg != "system" {
			a.set("ca_file", expandHome(arg, home))
		}
	case "tls_fingerprint":
		if isSHA256(arg) {
			a.set("tls_fingerprint", arg)
		} else if arg != "" {
			st.not(a, cmd, arg, "popfetch pins SHA-256 fingerprints only (mpop --serverinfo --tls shows it).")
		}
	case "tls_certcheck":
		st.certcheck = mpopOn(arg)
	case "tls_key_file":
		a.set("client_key", expandHome(arg, home))
	case "tls_cert_file":
		a.set("client_cert", expandHome(arg, home))
	case "tls_host_override":
		a.set("tls_server_name", arg)
	case "timeout":
		if n, err := strconv.Atoi(arg); err == nil && n > 0 {
			a.set("timeout", seconds(n))
		}
	case "pipelining":
		a.set("pipelining", arg)
	case "received_header":
		a.set("add_received", mpopOn(arg))
	case "keep":
		a.set("keep", mpopOn(arg))
	case "only_new":
		a.set("fetch_all", !mpopOn(arg))
	case "killsize":
		if n, ok := mpopSize(arg); ok {
			a.set("delete_larger_than", n)
		}
	case "skipsize":
		if n, ok := mpopSize(arg); ok {
			a.set("size_limit", n)
		}
	case "uidls_file":
		st.uidls = expandHome(arg, home)
	case "delivery":
		method, rest, _ := strings.Cut(arg, " ")
		// mpop takes a quoted rest whole, without its quotes:
		// delivery mda "procmail -d joe" runs procmail -d joe,
		// delivery maildir "~/My Mail" is that directory.
		rest = mpopUnquote(strings.TrimSpace(rest))
		switch method {
		case "maildir":
			a.setTarget("maildir", expandHome(rest, home))
		case "mbox":
			a.setTarget("mbox", expandHome(rest, home))
		case "mda":
			argv, sh := command(rest)
			a.setTarget("mda", argv)
			if sh {
				a.note("mpop: delivery mda %q ran through /bin/sh; popfetch runs no shell itself, so it calls /bin/sh explicitly, with the sender and recipient as \"$1\" and \"$2\".", rest)
			}
		default:
			st.not(a, cmd, arg, "popfetch delivers to a Maildir, an mbox, an MDA or LMTP.")
		}
	case "tls_crl_file", "tls_min_dh_prime_bits", "tls_priorities":
		st.not(a, cmd, arg, "popfetch uses Go's TLS: TLS 1.2 or newer, its own cipher suites; tls_min_version = \"1.3\" raises the floor.")
	case "filter":
		st.not(a, cmd, arg, "popfetch has no kill filter; size-based ones are delete_larger_than and size_limit.")
	case "proxy_host", "proxy_port", "socket", "source_ip", "ntlmdomain":
		st.not(a, cmd, arg, "popfetch has no equivalent.")
	default:
		st.not(a, cmd, arg, "unknown to popfetch.")
	}
}

// finish adds the connection keys, the notes that depend on all the
// commands, and the UIDs file's name.
func (st *mpopState) finish(a *Account) {
	if !st.certcheck {
		a.note("mpop: tls_certcheck off: not converted: popfetch always verifies the certificate; set ca_file, or pin it with tls_fingerprint.")
	}
	var tlsKeys []Key
	switch {
	case st.tls && !st.starttls:
		tlsKeys = []Key{{"tls", "implicit"}}
		if st.port == 0 {
			st.port = 995
		}
	case st.tls:
		tlsKeys = []Key{{"tls", "starttls"}}
	default:
		tlsKeys = []Key{{"tls", "none"}, {"allow_insecure_auth", true}}
		a.note("mpop: tls off (mpop's default): the password goes over the network in the clear; popfetch needs allow_insecure_auth = true for that. Use tls = \"starttls\" or \"implicit\" if the server offers it.")
	}
	if st.port == 0 {
		st.port = 110
	}
	a.Port = st.port
	if a.User == "" {
		a.User = loginName()
	}
	head := append([]Key{{"server", a.Server}, {"port", st.port}}, tlsKeys...)
	head = append(head, Key{"user", a.User})
	a.Keys = append(head, a.Keys...)
	_, md := a.get("maildir")
	_, mb := a.get("mbox")
	_, mda := a.get("mda")
	if !md && !mb && !mda {
		a.note("mpop: no delivery: set one of maildir, mbox, mda or lmtp.")
	}
	a.UIDFile = strings.NewReplacer("%U", a.User, "%H", a.Server).Replace(st.uidls)
}
