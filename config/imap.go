package config

import (
	"fmt"
	"slices"
	"strings"
)

// IMAP is an [account.imap] table: a delivery target that appends each
// message to a folder of an IMAP mailbox. Its connection keys mean what
// the account's do, for the IMAP server.
type IMAP struct {
	Server            string
	Port              int
	TLS               TLSMode
	CAFile            string
	TLSFingerprint    string
	TLSMinVersion     uint16
	TLSServerName     string
	User              string
	Password          Secret
	Auth              AuthMode // auto, plain, login, xoauth2 or oauthbearer
	OAuth2            *OAuth2  // nil unless [account.imap.oauth2]; RefreshTokenFile "" means STATE/oauth2/ACCOUNT.imap.json
	AllowInsecureAuth bool
	Folder            string   // "INBOX" unless set
	Flags             []string // set on each message appended; none by default (unread)
}

// IMAPAuthModes lists the values [account.imap] auth accepts.
var IMAPAuthModes = []AuthMode{AuthAuto, "plain", "login", "xoauth2", "oauthbearer"}

// imapScopes are the IMAP scopes of the OAuth2 presets where they differ
// from the POP3 ones.
var imapScopes = map[string][]string{
	"microsoft": {"https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"},
}

// rawIMAP is an [account.imap] table as written.
type rawIMAP struct {
	Server            *string    `toml:"server"`
	Port              *int       `toml:"port"`
	TLS               *string    `toml:"tls"`
	CAFile            *string    `toml:"ca_file"`
	TLSFingerprint    *string    `toml:"tls_fingerprint"`
	TLSMinVersion     *string    `toml:"tls_min_version"`
	TLSServerName     *string    `toml:"tls_server_name"`
	User              *string    `toml:"user"`
	Password          *string    `toml:"password"`
	PasswordCommand   *Command   `toml:"password_command"`
	PasswordFile      *string    `toml:"password_file"`
	PasswordEnv       *string    `toml:"password_env"`
	Auth              *string    `toml:"auth"`
	AllowInsecureAuth *bool      `toml:"allow_insecure_auth"`
	OAuth2            *rawOAuth2 `toml:"oauth2"`
	Folder            *string    `toml:"folder"`
	Flags             *[]string  `toml:"flags"`
}

// imapTarget builds the [account.imap] table, with the checks of the
// account's own connection keys (a builder of its own), its problems
// named "imap: ...".
func (b *builder) imapTarget(r rawIMAP) *IMAP {
	sub := &builder{dir: b.dir, dirOpen: b.dirOpen, invalid: func(string) bool { return false }, r: rawAccount{
		Server: r.Server, Port: r.Port, TLS: r.TLS, CAFile: r.CAFile, TLSFingerprint: r.TLSFingerprint,
		TLSMinVersion: r.TLSMinVersion, TLSServerName: r.TLSServerName, User: r.User,
		Password: r.Password, PasswordCommand: r.PasswordCommand, PasswordFile: r.PasswordFile,
		PasswordEnv: r.PasswordEnv, OAuth2: r.OAuth2, AllowInsecureAuth: r.AllowInsecureAuth,
	}}
	sub.a = Account{
		Server: str(r.Server), TLS: TLSMode(str(r.TLS)), User: str(r.User), Auth: AuthMode(str(r.Auth)),
		AllowInsecureAuth: r.AllowInsecureAuth != nil && *r.AllowInsecureAuth,
	}
	if sub.a.Server == "" {
		sub.bad("server is missing: the IMAP server's host name")
	} else if strings.ContainsFunc(sub.a.Server, func(c rune) bool { return c <= ' ' || c == 0x7f || c == '/' }) {
		sub.bad("server %q is not a host name", sub.a.Server)
	}
	if sub.a.User == "" {
		sub.bad("user is missing: the IMAP login name")
	}
	sub.connection()
	if r.Port == nil {
		sub.a.Port = 993
		if sub.a.TLS != TLSImplicit {
			sub.a.Port = 143
		}
	}
	if sub.a.Auth == "" {
		sub.a.Auth = AuthAuto
	}
	if !slices.Contains(IMAPAuthModes, sub.a.Auth) {
		sub.bad("auth = %q: want one of %s", sub.a.Auth, joinModes(IMAPAuthModes))
	}
	sub.tlsOptions()
	sub.secrets()
	a := sub.a
	m := &IMAP{
		Server: a.Server, Port: a.Port, TLS: a.TLS, CAFile: a.CAFile, TLSFingerprint: a.TLSFingerprint,
		TLSMinVersion: a.TLSMinVersion, TLSServerName: a.TLSServerName, User: a.User, Password: a.Password,
		Auth: a.Auth, OAuth2: a.OAuth2, AllowInsecureAuth: a.AllowInsecureAuth, Folder: "INBOX",
	}
	if m.OAuth2 != nil && r.OAuth2.Scopes == nil {
		if s, ok := imapScopes[m.OAuth2.Provider]; ok {
			m.OAuth2.Scopes = s
		}
	}
	if r.Folder != nil {
		m.Folder = *r.Folder
		if m.Folder == "" || strings.ContainsFunc(m.Folder, func(c rune) bool { return c < ' ' || c == 0x7f }) {
			sub.bad("folder %q: want a mailbox name, e.g. \"INBOX\" or \"Archive/POP\"", m.Folder)
		}
	}
	if r.Flags != nil {
		m.Flags = *r.Flags
		for _, f := range m.Flags {
			if !validFlag(f) {
				sub.bad("flags: %q is not an IMAP flag: want e.g. \"\\\\Seen\", \"\\\\Flagged\" or a keyword like \"pop\"", f)
			}
		}
	}
	for _, p := range sub.problems {
		b.problems = append(b.problems, "imap: "+p)
	}
	return m
}

// validFlag accepts a system flag (\Seen, \Answered, \Flagged, \Deleted,
// \Draft) or a keyword (an IMAP atom).
func validFlag(f string) bool {
	if k, ok := strings.CutPrefix(f, `\`); ok {
		switch strings.ToLower(k) {
		case "seen", "answered", "flagged", "deleted", "draft":
			return true
		}
		return false
	}
	return f != "" && len(f) <= 100 && !strings.ContainsFunc(f, func(c rune) bool {
		return c <= ' ' || c >= 0x7f || strings.ContainsRune(`(){%*"\]`, c)
	})
}

// dumpIMAP writes the [account.imap] table, secrets masked.
func (p *dumper) imap(name string, m *IMAP) {
	p.line("[account.imap]")
	p.str("server", m.Server)
	p.int("port", m.Port)
	p.str("tls", string(m.TLS))
	p.optional("ca_file", m.CAFile, "the system's roots")
	p.optional("tls_fingerprint", m.TLSFingerprint, "the certificate is checked against the roots")
	p.tlsMinVersion(m.TLSMinVersion)
	p.optional("tls_server_name", m.TLSServerName, "the server's name")
	p.str("user", m.User)
	p.secret(m.Password)
	p.str("auth", string(m.Auth))
	p.bool("allow_insecure_auth", m.AllowInsecureAuth)
	p.str("folder", m.Folder)
	if len(m.Flags) > 0 {
		p.strs("flags", m.Flags)
	} else {
		p.comment("flags: not set; messages arrive unread")
	}
	if m.OAuth2 != nil {
		p.oauth2("[account.imap.oauth2]", m.OAuth2, fmt.Sprintf("STATE/oauth2/%s.imap.json", name), imapScopes)
	}
}
