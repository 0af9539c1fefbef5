package config

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// masked stands in for a secret in Dump's output.
const masked = "********"

// Dump writes the configuration as TOML with every key of every account,
// defaults filled in, as popfetch will use it (like fetchmail
// --configdump). Secrets are masked; a key that is not set is written as a
// comment that says what applies instead. The output parses back into an
// equal configuration, except for the masked secrets.
func Dump(w io.Writer, c *Config) error {
	bw := bufio.NewWriter(w)
	p := &dumper{w: bw}
	p.comment("popfetch configuration from %s: effective values, defaults filled in, secrets masked", c.Path)
	if c.Dir != "" {
		p.comment("relative paths in it are resolved against %s; the paths below are absolute", Quote(c.Dir))
	}
	p.line("")
	p.line("[daemon]")
	p.limit("max_concurrent_polls", c.Daemon.MaxConcurrentPolls, 4)
	p.limit("max_sessions_per_server", c.Daemon.MaxSessionsPerServer, 2)
	p.duration("max_backoff", c.Daemon.MaxBackoff)
	for _, a := range c.Accounts {
		p.line("")
		p.account(a)
	}
	return bw.Flush()
}

type dumper struct{ w *bufio.Writer }

func (p *dumper) line(s string) { p.w.WriteString(s + "\n") }

func (p *dumper) comment(format string, args ...any) {
	p.line("# " + fmt.Sprintf(format, args...))
}

func (p *dumper) str(key, v string) { p.line(key + " = " + Quote(v)) }

func (p *dumper) int(key string, v int) { p.line(key + " = " + strconv.Itoa(v)) }

// limit writes a daemon limit, or says how the daemon sets it.
func (p *dumper) limit(key string, n, least int) {
	if n == 0 {
		p.comment("%s: not set; enough for the accounts' poll rate at a second a poll, at least %d", key, least)
		return
	}
	p.int(key, n)
}

func (p *dumper) bool(key string, v bool) { p.line(key + " = " + strconv.FormatBool(v)) }

func (p *dumper) duration(key string, d time.Duration) { p.str(key, d.String()) }

func (p *dumper) strs(key string, vs []string) {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = Quote(v)
	}
	p.line(key + " = [" + strings.Join(q, ", ") + "]")
}

// optional writes key if v is set, else a comment saying what applies.
func (p *dumper) optional(key, v, otherwise string) {
	if v == "" {
		p.comment("%s: not set; %s", key, otherwise)
		return
	}
	p.str(key, v)
}

func (p *dumper) size(key string, n int64, otherwise string) {
	if n == 0 {
		p.comment("%s: not set; %s", key, otherwise)
		return
	}
	p.line(key + " = " + strconv.FormatInt(n, 10))
}

func (p *dumper) tlsMinVersion(v uint16) {
	if v == tls.VersionTLS13 {
		p.str("tls_min_version", "1.3")
	} else {
		p.str("tls_min_version", "1.2")
	}
}

func (p *dumper) account(a Account) {
	p.line("[[account]]")
	p.str("name", a.Name)
	p.str("server", a.Server)
	p.int("port", a.Port)
	p.str("tls", string(a.TLS))
	p.optional("ca_file", a.CAFile, "the system's roots")
	p.optional("tls_fingerprint", a.TLSFingerprint, "the certificate is checked against the roots")
	p.tlsMinVersion(a.TLSMinVersion)
	p.optional("tls_server_name", a.TLSServerName, "the server's name")
	p.optional("client_cert", a.ClientCert, "no client certificate")
	p.optional("client_key", a.ClientKey, "no client certificate")
	p.str("user", a.User)
	p.secret(a.Password)
	p.str("auth", string(a.Auth))
	p.bool("allow_insecure_auth", a.AllowInsecureAuth)
	p.bool("keep", a.Keep)
	if a.DeleteAfter > 0 {
		p.duration("delete_after", a.DeleteAfter)
	} else {
		p.comment("delete_after: not set; kept mail stays on the server")
	}
	p.size("delete_larger_than", a.DeleteLargerThan, "nothing is deleted unread")
	p.bool("fetch_all", a.FetchAll)
	p.size("size_limit", a.SizeLimit, "no limit")
	if a.FetchLimit > 0 {
		p.int("fetch_limit", a.FetchLimit)
	} else {
		p.comment("fetch_limit: not set; no limit")
	}
	switch {
	case a.IMAP != nil, a.Gmail != nil:
		// The target's table follows, after the account's keys.
	case a.Maildir != "":
		p.str("maildir", a.Maildir)
	case a.Mbox != "":
		p.str("mbox", a.Mbox)
	case a.LMTP != "":
		p.str("lmtp", a.LMTP)
		if len(a.LMTPRecipients) > 0 {
			p.strs("lmtp_recipients", a.LMTPRecipients)
		} else {
			p.comment("lmtp_recipients: not set; the recipient")
		}
	case a.IMAP != nil:
		p.comment("maildir, mbox, mda, lmtp: not set; the [account.imap] table below is the target")
	default:
		p.strs("mda", a.MDA)
	}
	p.str("recipient", a.Recipient)
	p.bool("add_received", a.AddReceived)
	p.bool("delivered_to", a.DeliveredTo)
	p.bool("envelope_to", a.EnvelopeTo)
	p.bool("return_path", a.ReturnPath)
	p.duration("timeout", a.Timeout)
	p.duration("mda_timeout", a.MDATimeout)
	p.duration("poll_timeout", a.PollTimeout)
	if a.Interval > 0 {
		p.duration("interval", a.Interval)
	} else {
		p.comment("interval: not set; the daemon's --interval, else %v", DefaultInterval)
	}
	p.str("pipelining", string(a.Pipelining))
	if a.OAuth2 != nil {
		p.oauth2("[account.oauth2]", a.OAuth2, "STATE/oauth2/"+a.Name+".json")
	}
	if a.IMAP != nil {
		p.imap(a.Name, a.IMAP)
	}
	if a.Gmail != nil {
		p.gmail(a.Name, a.Gmail)
	}
}

// secret writes the password key that s came from, its value masked.
func (p *dumper) secret(s Secret) {
	switch {
	case s.value != "":
		p.str("password", masked)
	case s.file != "":
		p.str("password_file", s.file)
	case len(s.command) > 0:
		// Its arguments may hold a secret (echo PASSWORD): only the
		// program is shown, as Secret.String does.
		argv := []string{s.command[0]}
		for range s.command[1:] {
			argv = append(argv, masked)
		}
		p.strs("password_command", argv)
	case s.env != "":
		p.str("password_env", s.env)
	default:
		p.comment("password: not set; from ~/.netrc, else asked on the terminal (one-shot runs only)")
	}
}

// oauth2 writes an OAuth2 table under the header given.
func (p *dumper) oauth2(header string, o *OAuth2, tokenFile string) {
	p.line(header)
	// The provider is written as a key, not only resolved into the URLs:
	// it also brings what has no key of its own (Google's access_type
	// and prompt, without which popfetch auth gets no refresh token), and
	// a dump saved as the configuration must mean the same. URLs given
	// with it win over its own, so the tenant need not be written.
	if o.Provider != "" {
		p.str("provider", o.Provider)
	} else {
		p.comment("provider: not set; the URLs below are used as they are")
	}
	p.comment("tenant: resolved into the URLs below, if set")
	p.str("token_url", o.TokenURL)
	p.optional("device_auth_url", o.DeviceAuthURL, "popfetch auth cannot use the device flow")
	p.optional("auth_url", o.AuthURL, "popfetch auth cannot use the loopback flow")
	p.str("flow", o.Flow)
	p.str("client_id", o.ClientID)
	if o.ClientSecret != "" {
		p.str("client_secret", masked)
	} else {
		p.comment("client_secret: not set")
	}
	p.strs("scopes", o.Scopes)
	p.optional("refresh_token_file", o.RefreshTokenFile, tokenFile)
}

// Quote returns s as a TOML basic string, control characters escaped.
func Quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
