package migrate

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Getmail converts getmail6 rc files (INI): each file is one account. The
// UIDs are in the oldmail file beside each rc file (getmail's getmaildir).
func Getmail(paths []string, texts []string, home string) (*Result, error) {
	res := &Result{Tool: "getmail", Sources: paths}
	taken := map[string]bool{}
	for i, path := range paths {
		ini, err := parseINI(texts[i])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		a, skip := getmailAccount(path, ini, home)
		if skip {
			res.Notes = append(res.Notes, a.Notes...)
			continue
		}
		base := filepath.Base(path)
		name := base
		if base == "getmailrc" || base == "" {
			name = a.User + "@" + a.Server
		}
		a.Name = accountName(strings.TrimPrefix(name, "getmailrc-"), taken)
		a.Keys = append([]Key{{"name", a.Name}}, a.Keys...)
		res.Accounts = append(res.Accounts, a)
	}
	if len(res.Accounts) == 0 {
		return nil, fmt.Errorf("%s: no POP3 retrievers", strings.Join(paths, ", "))
	}
	noteRelativePaths(res)
	return res, nil
}

// parseINI reads sections of "key = value" (or "key: value") lines, as
// Python's configparser does: continuation lines are indented, comments
// start with # or ;.
func parseINI(text string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	var sec map[string]string
	lastKey := ""
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, " \t\r")
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, ";"):
			continue
		case strings.HasPrefix(trimmed, "[") && strings.HasSuffix(trimmed, "]"):
			name := strings.ToLower(strings.TrimSpace(trimmed[1 : len(trimmed)-1]))
			sec = map[string]string{}
			out[name] = sec
			lastKey = ""
		case line[0] == ' ' || line[0] == '\t':
			if sec == nil || lastKey == "" {
				return nil, fmt.Errorf("line %d: continuation line without a key", n+1)
			}
			sec[lastKey] += "\n" + trimmed
		default:
			if sec == nil {
				return nil, fmt.Errorf("line %d: %q outside a [section]", n+1, trimmed)
			}
			i := strings.IndexAny(trimmed, "=:")
			if i < 0 {
				return nil, fmt.Errorf("line %d: %q is not key = value", n+1, trimmed)
			}
			lastKey = strings.ToLower(strings.TrimSpace(trimmed[:i]))
			sec[lastKey] = strings.TrimSpace(trimmed[i+1:])
		}
	}
	return out, nil
}

// pyTuple reads a Python tuple or list of strings, such as getmail's
// arguments = ("-d", "%(local)"); a bare string is a tuple of one.
func pyTuple(v string) []string {
	v = strings.TrimSpace(v)
	if !strings.HasPrefix(v, "(") && !strings.HasPrefix(v, "[") {
		return []string{v}
	}
	v = strings.TrimSpace(v[1 : len(v)-1])
	var out []string
	for len(v) > 0 {
		v = strings.TrimLeft(v, " \t\n,")
		if v == "" {
			break
		}
		q := v[0]
		if q != '"' && q != '\'' {
			end := strings.IndexAny(v, ",")
			if end < 0 {
				end = len(v)
			}
			out = append(out, strings.TrimSpace(v[:end]))
			v = v[end:]
			continue
		}
		var b strings.Builder
		i := 1
		for ; i < len(v) && v[i] != q; i++ {
			if v[i] == '\\' && i+1 < len(v) {
				i++
			}
			b.WriteByte(v[i])
		}
		out = append(out, b.String())
		if i >= len(v) {
			break
		}
		v = v[i+1:]
	}
	return out
}

func pyBool(v string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "on", "1":
		return true, true
	case "false", "no", "off", "0":
		return false, true
	}
	return false, false
}

// getmailVars maps getmail's %(name) substitutions in MDA arguments.
var getmailVars = strings.NewReplacer("%(sender)", "%F", "%(recipient)", "%T", "%(local)", "%T")

func getmailAccount(path string, ini map[string]map[string]string, home string) (*Account, bool) {
	a := &Account{}
	r, d, o := ini["retriever"], ini["destination"], ini["options"]
	if r == nil {
		a.note("getmail: %s: no [retriever]: left out.", path)
		return a, true
	}
	not := func(sec, key, why string) {
		a.note("getmail: [%s] %s = %s: not converted: %s", sec, key, ini[sec][key], why)
	}
	port, skip := getmailRetriever(a, path, r, not, home)
	if skip {
		return a, true
	}
	getmailOptions(a, o, not)
	getmailDestination(a, d, not, home)
	a.UIDFile = filepath.Join(filepath.Dir(path), getmailOldmail(a.Server, port, a.User))
	return a, false
}

// getmailRetriever converts the [retriever] section r: the server, the
// TLS mode, the user and the password; it returns the port, and skip for
// a retriever that is not POP3.
func getmailRetriever(a *Account, path string, r map[string]string, not func(sec, key, why string), home string) (port int, skip bool) {
	typ := r["type"]
	var tlsKeys []Key
	port = 110
	switch typ {
	case "SimplePOP3Retriever", "MultidropPOP3Retriever", "BrokenUIDLPOP3Retriever":
		tlsKeys = []Key{{"tls", "none"}, {"allow_insecure_auth", true}}
		a.note("getmail: %s: no TLS, so the password goes over the network in the clear; popfetch needs allow_insecure_auth = true for that. Use tls = \"starttls\", or %s with tls = \"implicit\", if the server offers it.", typ, strings.Replace(typ, "POP3", "POP3SSL", 1))
	case "SimplePOP3SSLRetriever", "MultidropPOP3SSLRetriever", "BrokenUIDLPOP3SSLRetriever":
		tlsKeys = []Key{{"tls", "implicit"}}
		port = 995
	default:
		a.note("getmail: %s: [retriever] type = %s: left out: popfetch fetches POP3 only.", path, typ)
		return 0, true
	}
	if strings.HasPrefix(typ, "Multidrop") {
		a.note("getmail: %s: multidrop: popfetch delivers the mailbox to one recipient (envelope_recipient is not read).", typ)
	}
	if strings.HasPrefix(typ, "BrokenUIDL") {
		a.note("getmail: %s: popfetch needs UIDL to keep mail on the server; for a server without it, keep must be false.", typ)
	}
	for _, key := range sortedKeys(r) {
		v := r[key]
		switch key {
		case "type":
		case "server":
			a.Server = v
		case "port":
			if p, err := strconv.Atoi(v); err == nil {
				port = p
			}
		case "username":
			a.User = v
		case "password":
			a.set("password", v)
		case "password_command":
			a.set("password_command", pyTuple(v))
		case "use_apop":
			if b, _ := pyBool(v); b {
				a.set("auth", "apop")
			}
		case "use_xoauth2":
			if b, _ := pyBool(v); b {
				a.set("auth", "xoauth2")
			}
		case "timeout":
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				a.set("timeout", seconds(n))
			}
		case "ca_certs":
			a.set("ca_file", expandHome(v, home))
		case "certfile":
			a.set("client_cert", expandHome(v, home))
		case "keyfile":
			a.set("client_key", expandHome(v, home))
		case "ssl_cert_hostname":
			a.set("tls_server_name", v)
		case "ssl_fingerprints":
			fps := pyTuple(v)
			if len(fps) > 0 && isSHA256(fps[0]) {
				a.set("tls_fingerprint", fps[0])
				if len(fps) > 1 {
					a.note("getmail: ssl_fingerprints: popfetch pins one certificate; the first was taken.")
				}
			} else {
				not("retriever", key, "popfetch pins SHA-256 fingerprints only.")
			}
		case "envelope_recipient":
			not("retriever", key, "multidrop: popfetch does not read recipients from the header.")
		default:
			not("retriever", key, "popfetch has no equivalent.")
		}
	}
	a.Port = port
	head := append([]Key{{"server", a.Server}, {"port", port}}, tlsKeys...)
	head = append(head, Key{"user", a.User})
	a.Keys = append(head, a.Keys...)
	return port, false
}

// getmailOptions converts the [options] section o, with getmail's
// defaults where it says nothing.
func getmailOptions(a *Account, o map[string]string, not func(sec, key, why string)) {
	// getmail's defaults differ from popfetch's: delete = false,
	// read_all = true, delivered_to = true, received = true.
	keep, readAll, deliveredTo := true, true, true
	for _, key := range sortedKeys(o) {
		v := o[key]
		switch key {
		case "delete":
			if b, ok := pyBool(v); ok {
				keep = !b
			}
		case "read_all":
			if b, ok := pyBool(v); ok {
				readAll = b
			}
		case "delete_after":
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				a.set("delete_after", strconv.Itoa(n)+"d")
			}
		case "delete_bigger_than":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				a.set("delete_larger_than", n)
			}
		case "max_message_size":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				a.set("size_limit", n)
			}
		case "max_messages_per_session":
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				a.set("fetch_limit", n)
			}
		case "delivered_to":
			if b, ok := pyBool(v); ok {
				deliveredTo = b
			}
		case "received":
			if b, ok := pyBool(v); ok {
				a.set("add_received", b)
			}
		case "verbose", "message_log", "message_log_syslog", "message_log_verbose", "logfile":
			not("options", key, "popfetch logs to standard error (-v for more, -q for less).")
		default:
			not("options", key, "popfetch has no equivalent.")
		}
	}
	_, hasDeleteAfter := a.get("delete_after")
	switch {
	case hasDeleteAfter && !keep:
		a.note("getmail: delete = true with delete_after: getmail deleted at once; so does popfetch without delete_after, which is left out.")
		a.unset("delete_after")
	case keep && !hasDeleteAfter:
		a.set("keep", true)
	}
	if readAll {
		a.set("fetch_all", true)
		a.note("getmail: read_all is true (getmail's default): every run fetched every message again. fetch_all = true does the same; you most likely want it false.")
	}
	a.set("delivered_to", deliveredTo)
	a.set("return_path", true)
	a.note("getmail: getmail put a Return-Path field on every message; return_path = true adds one, from From, to those that have none.")
}

// getmailDestination converts the [destination] section d.
func getmailDestination(a *Account, d map[string]string, not func(sec, key, why string), home string) {
	if d == nil {
		a.note("getmail: no [destination]: set one of maildir, mbox, mda or lmtp.")
	} else {
		switch d["type"] {
		case "Maildir":
			a.setTarget("maildir", expandHome(d["path"], home))
		case "Mboxrd":
			a.setTarget("mbox", expandHome(d["path"], home))
			if d["locktype"] != "" && d["locktype"] != "lockf" && d["locktype"] != "fcntl" {
				not("destination", "locktype", "popfetch takes both a dot-lock and an fcntl lock.")
			}
		case "MDA_external":
			argv := []string{d["path"]}
			if args, ok := d["arguments"]; ok {
				argv = append(argv, pyTuple(args)...)
			}
			for i := range argv {
				argv[i] = getmailVars.Replace(argv[i])
			}
			a.setTarget("mda", argv)
			for _, k := range []string{"unixfrom", "user", "group", "allow_root_commands", "ignore_stderr"} {
				if _, ok := d[k]; ok {
					not("destination", k, "popfetch runs the MDA as the user running popfetch, with the message as it is.")
				}
			}
		default:
			a.note("getmail: [destination] type = %s: not converted: popfetch delivers to one Maildir, mbox, MDA or LMTP server; set one.", d["type"])
		}
	}
}

// getmailOldmail is the name of getmail's UID file for a mailbox.
func getmailOldmail(server string, port int, user string) string {
	name := fmt.Sprintf("oldmail-%s-%d-%s", server, port, user)
	return strings.NewReplacer("/", "-", ":", "-").Replace(name)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
