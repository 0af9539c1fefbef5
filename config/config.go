// Package config reads popfetch's TOML configuration into validated,
// typed accounts with defaults applied.
//
// A file has an optional [defaults] table, whose keys apply to every
// account that does not set them, and one [[account]] table per mailbox.
// Unknown keys are errors that name the key's path; a file that holds a
// password and can be read by group or others is refused.
package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"

	"github.com/popfetch/popfetch/fetch"
)

// The modes of an account are fetch's: one definition, which the
// configuration names and validates (TestModesAreFetchs).
type (
	// TLSMode says how a connection is secured (fetch.TLSMode).
	TLSMode = fetch.TLSMode
	// AuthMode says how popfetch logs in (fetch.AuthMode).
	AuthMode = fetch.AuthMode
	// PipeliningMode says whether commands are pipelined (fetch.PipeliningMode).
	PipeliningMode = fetch.PipeliningMode
)

// The TLS and authentication modes, as fetch defines them.
const (
	TLSImplicit     = fetch.TLSImplicit
	TLSStartTLS     = fetch.TLSStartTLS
	TLSNone         = fetch.TLSNone
	AuthAuto        = fetch.AuthAuto
	AuthUser        = fetch.AuthUser
	AuthAPOP        = fetch.AuthAPOP
	AuthPlain       = fetch.AuthPlain
	AuthLogin       = fetch.AuthLogin
	AuthCRAMMD5     = fetch.AuthCRAMMD5
	AuthSCRAMSHA1   = fetch.AuthSCRAMSHA1
	AuthSCRAMSHA256 = fetch.AuthSCRAMSHA256
	AuthXOAuth2     = fetch.AuthXOAuth2
	AuthOAuthBearer = fetch.AuthOAuthBearer
	AuthExternal    = fetch.AuthExternal
)

// AuthModes lists the values auth accepts: every mode fetch knows.
var AuthModes = fetch.AuthModes

// OAuth2 is an [account.oauth2] table: how popfetch gets access tokens
// itself, refreshing them with a stored refresh token.
type OAuth2 struct {
	Provider      string // "google", "microsoft" or "" (URLs given)
	Tenant        string // with Provider "microsoft": the tenant as written; "" means "common"
	TokenURL      string
	DeviceAuthURL string // for "popfetch auth" with Flow "device" (RFC 8628)
	AuthURL       string // for "popfetch auth" with Flow "loopback" (RFC 8252)
	// Flow is how "popfetch auth" gets the first refresh token:
	// FlowLoopback or FlowDevice.
	Flow string
	// AuthParams are added to the authorization URL of the loopback
	// flow (from the provider: Google's access_type and prompt).
	AuthParams       map[string]string
	ClientID         string
	ClientSecret     string
	Scopes           []string
	RefreshTokenFile string // "" means STATE/oauth2/ACCOUNT.json
}

// The ways "popfetch auth" gets the first refresh token ([account.oauth2]
// flow = "...").
const (
	// FlowLoopback is the authorization code grant with PKCE and a
	// redirect to a loopback address (RFC 8252, RFC 7636): a browser.
	FlowLoopback = "loopback"
	// FlowDevice is the device authorization grant (RFC 8628): a code
	// entered on any device.
	FlowDevice = "device"
)

// Provider endpoints and scopes for [account.oauth2] provider = "...".
// Microsoft's take a tenant: "common" unless tenant is set.
var oauth2Providers = map[string]OAuth2{
	"google": {
		TokenURL:      "https://oauth2.googleapis.com/token",
		DeviceAuthURL: "https://oauth2.googleapis.com/device/code",
		AuthURL:       "https://accounts.google.com/o/oauth2/v2/auth",
		// Google's device flow does not grant the Gmail scopes.
		Flow: FlowLoopback,
		// Without access_type=offline Google issues no refresh token;
		// without prompt=consent none on a second authorization.
		AuthParams: map[string]string{"access_type": "offline", "prompt": "consent"},
		Scopes:     []string{"https://mail.google.com/"},
	},
	"microsoft": {
		TokenURL:      "https://login.microsoftonline.com/%s/oauth2/v2.0/token",
		DeviceAuthURL: "https://login.microsoftonline.com/%s/oauth2/v2.0/devicecode",
		AuthURL:       "https://login.microsoftonline.com/%s/oauth2/v2.0/authorize",
		Flow:          FlowDevice,
		Scopes:        []string{"https://outlook.office.com/POP.AccessAsUser.All", "offline_access"},
	},
}

// Defaults for keys an account and [defaults] leave unset.
const (
	DefaultTimeout    = 60 * time.Second
	DefaultMDATimeout = 5 * time.Minute
	// DefaultPollTimeout is the ceiling of a whole poll: far more than an
	// honest server needs for a mailbox, and what a hostile one can hold
	// a poll (and the state file, and later cron runs) at most.
	DefaultPollTimeout = 3 * time.Hour
	// DefaultInterval is the daemon's interval when neither the account,
	// [defaults] nor the command line sets one.
	DefaultInterval = 5 * time.Minute
)

// Defaults of the [daemon] table. max_concurrent_polls and
// max_sessions_per_server have none: unset (0), the daemon sets them from
// the accounts' poll rate (see schedule.Config).
const (
	DefaultMaxBackoff = time.Hour
)

// Account is one mailbox to poll, validated, with defaults applied.
type Account struct {
	Name              string
	Server            string
	Port              int
	TLS               TLSMode
	CAFile            string // PEM roots to verify the server against; "" means the system roots
	TLSFingerprint    string // SHA-256 of the server's certificate, pinned instead of the CA check
	TLSMinVersion     uint16 // tls.VersionTLS12 or tls.VersionTLS13
	TLSServerName     string // the name to verify and send as SNI; "" means Server
	ClientCert        string // PEM certificate to present, with ClientKey
	ClientKey         string
	User              string
	Password          Secret
	Auth              AuthMode
	OAuth2            *OAuth2 // nil unless the account has an [account.oauth2] table
	AllowInsecureAuth bool
	Keep              bool
	// DeleteAfter, if not zero, deletes a message from the server once
	// this long has passed since it was first delivered (Keep is then
	// true: younger messages stay).
	DeleteAfter time.Duration
	// DeleteLargerThan, if not zero, deletes new messages larger than
	// this from the server without fetching them (mpop's killsize).
	DeleteLargerThan int64
	// FetchAll fetches every message, also those delivered before
	// (fetchmail's fetchall).
	FetchAll   bool
	SizeLimit  int64 // messages larger than this are left on the server; 0: no limit
	FetchLimit int   // at most this many messages per poll; 0: no limit
	// The delivery target: exactly one of Maildir, MDA, Mbox, LMTP and
	// IMAP.
	Maildir string
	MDA     []string
	Mbox    string
	// LMTP is an LMTP server: a Unix socket's path, or "host:port".
	LMTP string
	// LMTPRecipients are the RCPT TO addresses; empty means Recipient.
	LMTPRecipients []string
	// IMAP is an IMAP mailbox's folder to append to ([account.imap]).
	IMAP *IMAP
	// Gmail is a Gmail mailbox to import into ([account.gmail]).
	Gmail       *Gmail
	Recipient   string // %T for the MDA and "for" in the Received field
	AddReceived bool
	// DeliveredTo, EnvelopeTo and ReturnPath add a Delivered-To or
	// X-Envelope-To field naming Recipient, or a Return-Path field with
	// the sender when the message has none.
	DeliveredTo bool
	EnvelopeTo  bool
	ReturnPath  bool
	Timeout     time.Duration // bounds connecting and every network read and write
	MDATimeout  time.Duration
	PollTimeout time.Duration // the longest a whole poll may take
	Interval    time.Duration // between polls, for the daemon; 0 if not set
	Pipelining  PipeliningMode
}

// Daemon is the [daemon] table: limits of "popfetch daemon".
type Daemon struct {
	MaxConcurrentPolls   int           // polls at once; 0: from the poll rate
	MaxSessionsPerServer int           // polls of one server (host and port) at once; 0: from the poll rate
	MaxBackoff           time.Duration // the longest wait after failures
}

// Config is a loaded configuration file.
type Config struct {
	Path string
	// Dir is the absolute directory relative paths in the file were
	// resolved against: the one the file's name is in (a symbolic link
	// is not followed).
	Dir      string
	Daemon   Daemon
	Accounts []Account
}

// Select returns the accounts with the given names, in the order given, or
// all accounts if names is empty. An unknown name is an error.
func (c *Config) Select(names []string) ([]Account, error) {
	if len(names) == 0 {
		return c.Accounts, nil
	}
	var out []Account
	for _, n := range names {
		found := false
		for _, a := range c.Accounts {
			if a.Name == n {
				out = append(out, a)
				found = true
				break
			}
		}
		if !found {
			return nil, &UnknownAccountError{Path: c.Path, Name: n, Accounts: c.Names()}
		}
	}
	return out, nil
}

// Names returns the names of the accounts, in the file's order.
func (c *Config) Names() []string {
	names := make([]string, len(c.Accounts))
	for i, a := range c.Accounts {
		names[i] = a.Name
	}
	return names
}

// UnknownAccountError is a name, asked for on the command line, that no
// account of the file has.
type UnknownAccountError struct {
	Path     string
	Name     string   // the name asked for
	Accounts []string // the names the file has
}

func (e *UnknownAccountError) Error() string {
	msg := fmt.Sprintf("%s: no account named %q", e.Path, e.Name)
	if s := Nearest(e.Name, e.Accounts); s != "" {
		return msg + fmt.Sprintf(" (did you mean %q?)", s)
	}
	if len(e.Accounts) > 0 && len(e.Accounts) <= maxListed {
		return msg + "; the accounts are " + QuoteList(e.Accounts)
	}
	return msg
}

// maxListed is the most names an error lists.
const maxListed = 10

// QuoteList returns the names quoted and joined by commas and "and".
func QuoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	if len(q) < 2 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}

// Nearest returns the candidate closest to s if it is close enough to be
// what was meant: at most two edits away (a swap of two neighbouring
// letters counts as one), and fewer than half of s; "" if none is.
func Nearest(s string, candidates []string) string {
	best, bestDist := "", min(2, len(s)/2)+1
	for _, c := range candidates {
		if len(s) > 100 || len(c) > len(s)+2 || len(s) > len(c)+2 {
			continue // too far apart to be a typo; and bounded work
		}
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if d < bestDist || (d == bestDist && best != "" && c < best) {
			best, bestDist = c, d
		}
	}
	return best
}

// Error lists what is wrong with a configuration file.
type Error struct {
	Path     string
	Problems []string
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return e.Path + ": " + e.Problems[0]
	}
	return e.Path + ":\n  " + strings.Join(e.Problems, "\n  ")
}

// SyntaxError is a TOML syntax error, with its position.
type SyntaxError struct {
	Path         string
	Line, Column int
	Msg          string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.Path, e.Line, e.Column, e.Msg)
}

// PermissionError reports a file holding a secret that others can read.
type PermissionError struct {
	Path string
	Mode fs.FileMode
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("%s holds a password but has mode %04o: others can read it; run: chmod 600 %s",
		e.Path, e.Mode.Perm(), e.Path)
}

// rawAccount is an [[account]] or the [defaults] table as written. Pointers
// tell unset from zero.
type rawAccount struct {
	Name              *string    `toml:"name"`
	Server            *string    `toml:"server"`
	Port              *int       `toml:"port"`
	TLS               *string    `toml:"tls"`
	CAFile            *string    `toml:"ca_file"`
	TLSFingerprint    *string    `toml:"tls_fingerprint"`
	TLSMinVersion     *string    `toml:"tls_min_version"`
	TLSServerName     *string    `toml:"tls_server_name"`
	ClientCert        *string    `toml:"client_cert"`
	ClientKey         *string    `toml:"client_key"`
	User              *string    `toml:"user"`
	Password          *string    `toml:"password"`
	PasswordCommand   *Command   `toml:"password_command"`
	PasswordFile      *string    `toml:"password_file"`
	PasswordEnv       *string    `toml:"password_env"`
	OAuth2            *rawOAuth2 `toml:"oauth2"`
	Auth              *string    `toml:"auth"`
	AllowInsecureAuth *bool      `toml:"allow_insecure_auth"`
	Keep              *bool      `toml:"keep"`
	DeleteAfter       *Duration  `toml:"delete_after"`
	DeleteLargerThan  *Size      `toml:"delete_larger_than"`
	FetchAll          *bool      `toml:"fetch_all"`
	SizeLimit         *Size      `toml:"size_limit"`
	FetchLimit        *int       `toml:"fetch_limit"`
	Maildir           *string    `toml:"maildir"`
	MDA               *Command   `toml:"mda"`
	Mbox              *string    `toml:"mbox"`
	LMTP              *string    `toml:"lmtp"`
	LMTPRecipients    *[]string  `toml:"lmtp_recipients"`
	IMAP              *rawIMAP   `toml:"imap"`
	Gmail             *rawGmail  `toml:"gmail"`
	Recipient         *string    `toml:"recipient"`
	AddReceived       *bool      `toml:"add_received"`
	DeliveredTo       *bool      `toml:"delivered_to"`
	EnvelopeTo        *bool      `toml:"envelope_to"`
	ReturnPath        *bool      `toml:"return_path"`
	Timeout           *Duration  `toml:"timeout"`
	MDATimeout        *Duration  `toml:"mda_timeout"`
	PollTimeout       *Duration  `toml:"poll_timeout"`
	Interval          *Duration  `toml:"interval"`
	Pipelining        *string    `toml:"pipelining"`
}

// rawOAuth2 is an [account.oauth2] table as written.
type rawOAuth2 struct {
	Provider         *string  `toml:"provider"`
	Tenant           *string  `toml:"tenant"`
	TokenURL         *string  `toml:"token_url"`
	DeviceAuthURL    *string  `toml:"device_auth_url"`
	AuthURL          *string  `toml:"auth_url"`
	Flow             *string  `toml:"flow"`
	ClientID         *string  `toml:"client_id"`
	ClientSecret     *string  `toml:"client_secret"`
	Scopes           []string `toml:"scopes"`
	RefreshTokenFile *string  `toml:"refresh_token_file"`
}

// rawDaemon is the [daemon] table as written.
type rawDaemon struct {
	MaxConcurrentPolls   *int      `toml:"max_concurrent_polls"`
	MaxSessionsPerServer *int      `toml:"max_sessions_per_server"`
	MaxBackoff           *Duration `toml:"max_backoff"`
}

type rawConfig struct {
	Daemon   rawDaemon    `toml:"daemon"`
	Defaults rawAccount   `toml:"defaults"`
	Account  []rawAccount `toml:"account"`
}

// Load reads and validates the configuration file at path. The file is
// opened once, and its permissions are those of the file read. A file
// that others may read and that holds a password is refused before
// anything else is said of it: also when it does not parse, if a password
// key appears in it, so that no error can show the secret where it may be
// seen (a terminal, the journal on a reload).
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("config: %s is larger than %d MiB", path, maxConfigSize>>20)
	}
	open := fi.Mode().Perm()&0o077 != 0
	cfg, err := Parse(path, string(data))
	if err != nil {
		if open && secretKeyRE().Match(data) {
			return nil, &PermissionError{Path: path, Mode: fi.Mode()}
		}
		return nil, err
	}
	if open && holdsPassword(cfg) {
		return nil, &PermissionError{Path: path, Mode: fi.Mode()}
	}
	return cfg, nil
}

// maxConfigSize bounds the configuration file read.
const maxConfigSize = 16 << 20

// secretKeyRE finds a key that holds a secret, in a file that may not
// parse.
var secretKeyRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?m)^\s*(password|client_secret)\s*=`)
})

func holdsPassword(cfg *Config) bool {
	for _, a := range cfg.Accounts {
		if a.Password.value != "" || (a.OAuth2 != nil && a.OAuth2.ClientSecret != "") ||
			(a.IMAP != nil && (a.IMAP.Password.value != "" || (a.IMAP.OAuth2 != nil && a.IMAP.OAuth2.ClientSecret != ""))) ||
			(a.Gmail != nil && a.Gmail.OAuth2 != nil && a.Gmail.OAuth2.ClientSecret != "") {
			return true
		}
	}
	return false
}

// Parse validates configuration text read from the file at path.
// Relative paths in it (maildir, mbox, ca_file, client_cert, client_key,
// password_file, refresh_token_file, and a program given as "dir/prog" in
// mda or password_command) are resolved against the directory path is
// in, made absolute: not the working directory, which is another one
// under cron or systemd.
func Parse(path, text string) (*Config, error) {
	var generic map[string]any
	if _, err := toml.Decode(text, &generic); err != nil {
		return nil, syntaxError(path, text, err)
	}
	// Every key's type is checked here, and every unknown key found,
	// before the values are: one run reports all of a file's problems.
	// A key of the wrong type is left unset; the checks below that it
	// would only confuse (name is missing) are not made for it.
	var raw rawConfig
	dec := &decoder{}
	dec.table(reflect.ValueOf(&raw).Elem(), generic, "")
	cfg := &Config{Path: path, Dir: configDir(path)}
	problems := dec.problems
	daemon, daemonProblems := buildDaemon(raw.Daemon)
	cfg.Daemon, problems = daemon, append(problems, daemonProblems...)
	if raw.Defaults.Name != nil {
		problems = append(problems, "defaults.name: an account's name cannot have a default")
	}
	if len(raw.Account) == 0 && !dec.bad["account"] {
		problems = append(problems, "no [[account]] tables")
	}
	seen := map[string]bool{}
	tokenFiles := map[string]string{} // token file -> the table that keeps its token there
	for i, ra := range raw.Account {
		where := fmt.Sprintf("account[%d]", i+1)
		if ra.Name != nil {
			where += fmt.Sprintf(" (%q)", *ra.Name)
		}
		invalid := func(key string) bool {
			return dec.bad[fmt.Sprintf("account[%d].%s", i+1, key)] || dec.bad["defaults."+key]
		}
		a, errs := build(merge(ra, raw.Defaults), cfg.Dir, invalid)
		for _, e := range errs {
			problems = append(problems, where+": "+e)
		}
		if a.Name != "" && seen[a.Name] {
			problems = append(problems, fmt.Sprintf("%s: another account is also named %q", where, a.Name))
		}
		seen[a.Name] = true
		problems = append(problems, sharedTokenFiles(where, a, tokenFiles)...)
		cfg.Accounts = append(cfg.Accounts, a)
	}
	if len(problems) > 0 {
		return nil, &Error{Path: path, Problems: problems}
	}
	return cfg, nil
}

// sharedTokenFiles notes in files where a's OAuth2 tables keep their
// tokens (STATE/oauth2/NAME.json and NAME.imap.json unless
// refresh_token_file is set) and reports a file another table uses too:
// one side's token would be saved over the other's, and used for it (an
// account "work.imap"'s POP3 token is account "work"'s IMAP one by
// default).
func sharedTokenFiles(where string, a Account, files map[string]string) []string {
	var problems []string
	note := func(table string, o *OAuth2, def string) {
		if o == nil {
			return
		}
		file := o.RefreshTokenFile
		if file == "" {
			file = def
		}
		if other, ok := files[file]; ok {
			problems = append(problems, fmt.Sprintf("%s: %s keeps its token in %s, as %s does: set refresh_token_file to a file of its own", where, table, file, other))
			return
		}
		files[file] = fmt.Sprintf("the %s of account %q", table, a.Name)
	}
	note("[account.oauth2]", a.OAuth2, "STATE/oauth2/"+a.Name+".json")
	if a.IMAP != nil {
		note("[account.imap.oauth2]", a.IMAP.OAuth2, "STATE/oauth2/"+a.Name+".imap.json")
	}
	if a.Gmail != nil {
		note("[account.gmail.oauth2]", a.Gmail.OAuth2, "STATE/oauth2/"+a.Name+".gmail.json")
	}
	return problems
}

func buildDaemon(r rawDaemon) (Daemon, []string) {
	d := Daemon{MaxBackoff: DefaultMaxBackoff}
	var problems []string
	if r.MaxConcurrentPolls != nil {
		d.MaxConcurrentPolls = *r.MaxConcurrentPolls
		if d.MaxConcurrentPolls < 1 {
			problems = append(problems, fmt.Sprintf("daemon.max_concurrent_polls %d: want 1 or more", d.MaxConcurrentPolls))
		}
	}
	if r.MaxSessionsPerServer != nil {
		d.MaxSessionsPerServer = *r.MaxSessionsPerServer
		if d.MaxSessionsPerServer < 1 {
			problems = append(problems, fmt.Sprintf("daemon.max_sessions_per_server %d: want 1 or more", d.MaxSessionsPerServer))
		}
	}
	if r.MaxBackoff != nil {
		d.MaxBackoff = time.Duration(*r.MaxBackoff)
		if d.MaxBackoff < time.Second {
			problems = append(problems, fmt.Sprintf("daemon.max_backoff %v is shorter than a second", d.MaxBackoff))
		}
	}
	return d, problems
}

func syntaxError(path, text string, err error) error {
	var perr toml.ParseError
	if errors.As(err, &perr) {
		msg := withoutQuotes(perr.Message)
		// An unquoted value the parser names ("98765432109876543210 is
		// out of range") is masked too: the value of the line at fault.
		lines := strings.Split(text, "\n")
		if l := perr.Position.Line; l >= 1 && l <= len(lines) {
			if m, ok := duplicateKey(perr.Message, lines[l-1]); ok {
				return &SyntaxError{Path: path, Line: l, Column: perr.Position.Col, Msg: m}
			}
			if _, v, ok := strings.Cut(lines[l-1], "="); ok {
				if v = strings.TrimSpace(v); len(v) >= 3 {
					msg = strings.ReplaceAll(msg, v, "…")
				}
			}
		}
		return &SyntaxError{Path: path, Line: perr.Position.Line, Column: perr.Position.Col, Msg: msg}
	}
	return &Error{Path: path, Problems: []string{withoutQuotes(err.Error())}}
}

// quotedRE matches what a TOML parser's message quotes from the file.
var quotedRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'[^']*'`)
})

// duplicateKeyRE matches the parser's message for a key set twice, when
// the key is made of bare-key characters: a key's name, not a value.
var duplicateKeyRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^Key '([A-Za-z0-9_.-]+)' has already been defined\.$`)
})

// withoutQuotes masks what a parser's message quotes from the file: it
// may be a password (`expected value but found "s3cret"`). The line and
// column say where to look. Only the name of a key set twice is kept:
// names are not secrets, and the line alone does not say which of two
// settings to remove.
func withoutQuotes(msg string) string {
	return quotedRE().ReplaceAllString(msg, `"…"`)
}

// duplicateKey returns the parser's message for a key set twice with the
// key's name, if the line at fault writes that key bare (a quoted key
// could be anything, and stays masked).
func duplicateKey(msg, line string) (string, bool) {
	m := duplicateKeyRE().FindStringSubmatch(msg)
	if m == nil {
		return "", false
	}
	last := m[1][strings.LastIndex(m[1], ".")+1:]
	rest, ok := strings.CutPrefix(strings.TrimLeft(line, " \t[]"), last)
	if !ok || (rest != "" && !strings.ContainsAny(rest[:1], " \t=]")) {
		return "", false
	}
	return fmt.Sprintf("%s is defined twice", m[1]), true
}

// merge fills the fields a leaves unset from d. Keys that are
// alternatives to each other (the password sources; the delivery targets) are
// taken from d only if a sets none of them.
func merge(a, d rawAccount) rawAccount {
	if a.Password != nil || a.PasswordCommand != nil || a.PasswordFile != nil || a.PasswordEnv != nil {
		d.Password, d.PasswordCommand, d.PasswordFile, d.PasswordEnv = nil, nil, nil, nil
	}
	if a.Maildir != nil || a.MDA != nil || a.Mbox != nil || a.LMTP != nil || a.IMAP != nil || a.Gmail != nil {
		d.Maildir, d.MDA, d.Mbox, d.LMTP, d.LMTPRecipients, d.IMAP, d.Gmail = nil, nil, nil, nil, nil, nil, nil
	}
	av, dv := reflect.ValueOf(&a).Elem(), reflect.ValueOf(d)
	for i := 0; i < av.NumField(); i++ {
		if av.Field(i).IsNil() {
			av.Field(i).Set(dv.Field(i))
		}
	}
	return a
}

// validName reports whether s is an account name: a letter or digit,
// then letters, digits and . _ @ + -.
func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._@+-", rune(c))) {
			return false
		}
	}
	return s != ""
}

// validEnvName reports whether s is an environment variable's name: a
// letter or _, then letters, digits and _.
func validEnvName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || i > 0 && '0' <= c && c <= '9'
		if !ok {
			return false
		}
	}
	return s != ""
}

func joinModes(modes []AuthMode) string {
	var q []string
	for _, m := range modes {
		q = append(q, fmt.Sprintf("%q", m))
	}
	return strings.Join(q, ", ")
}

// buildOAuth2 validates an [account.oauth2] table and fills in a
// provider's endpoints and scopes.
func buildOAuth2(r rawOAuth2) (*OAuth2, []string) {
	var problems []string
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	o := &OAuth2{
		Provider: str(r.Provider), TokenURL: str(r.TokenURL), DeviceAuthURL: str(r.DeviceAuthURL),
		AuthURL: str(r.AuthURL), Flow: str(r.Flow), ClientID: str(r.ClientID), ClientSecret: str(r.ClientSecret), Scopes: r.Scopes,
		RefreshTokenFile: ExpandPath(str(r.RefreshTokenFile)),
	}
	if o.Provider != "" {
		p, ok := oauth2Providers[o.Provider]
		if !ok {
			problems = append(problems, fmt.Sprintf("provider = %q: want \"google\" or \"microsoft\" (or give token_url)", o.Provider))
		}
		o.Tenant = str(r.Tenant)
		tenant := o.Tenant
		if tenant == "" {
			tenant = "common"
		}
		if o.TokenURL == "" {
			o.TokenURL = strings.Replace(p.TokenURL, "%s", tenant, 1)
		}
		if o.DeviceAuthURL == "" {
			o.DeviceAuthURL = strings.Replace(p.DeviceAuthURL, "%s", tenant, 1)
		}
		if o.AuthURL == "" {
			o.AuthURL = strings.Replace(p.AuthURL, "%s", tenant, 1)
		}
		if o.Flow == "" {
			o.Flow = p.Flow
		}
		o.AuthParams = p.AuthParams
		if o.Scopes == nil {
			o.Scopes = p.Scopes
		}
	} else if r.Tenant != nil {
		problems = append(problems, "tenant is set without provider = \"microsoft\"")
	}
	if o.Flow == "" {
		// Without a provider: the flow whose endpoint is given, the
		// device flow if both are.
		o.Flow = FlowDevice
		if o.DeviceAuthURL == "" && o.AuthURL != "" {
			o.Flow = FlowLoopback
		}
	}
	switch o.Flow {
	case FlowDevice, FlowLoopback:
	default:
		problems = append(problems, fmt.Sprintf("flow = %q: want \"loopback\" (a browser) or \"device\" (a code entered on any device)", o.Flow))
	}
	if r.Flow != nil && o.Flow == FlowLoopback && o.AuthURL == "" {
		problems = append(problems, "flow = \"loopback\" needs auth_url (or provider)")
	}
	if r.Flow != nil && o.Flow == FlowDevice && o.DeviceAuthURL == "" {
		problems = append(problems, "flow = \"device\" needs device_auth_url (or provider = \"microsoft\")")
	}
	if o.TokenURL == "" {
		problems = append(problems, "token_url is missing (or set provider)")
	}
	if o.ClientID == "" {
		problems = append(problems, "client_id is missing")
	}
	for _, u := range []struct{ key, v string }{{"token_url", o.TokenURL}, {"device_auth_url", o.DeviceAuthURL}, {"auth_url", o.AuthURL}} {
		if u.v != "" && !strings.HasPrefix(u.v, "https://") && !isLoopbackURL(u.v) {
			problems = append(problems, fmt.Sprintf("%s %q: must be https:// (http:// only for localhost)", u.key, u.v))
		}
	}
	return o, problems
}

// isLoopbackURL allows plain http to a local token endpoint (tests, and
// local helpers).
func isLoopbackURL(u string) bool {
	for _, p := range []string{"http://127.0.0.1:", "http://127.0.0.1/", "http://localhost:", "http://localhost/", "http://[::1]:", "http://[::1]/"} {
		if strings.HasPrefix(u, p) {
			return true
		}
	}
	return false
}

// build validates one merged account and applies defaults.
// build turns a raw account into an Account, with a problem for each
// mistake in it; each part of the account is checked by a method of its
// own.
func build(r rawAccount, dir string, invalid func(key string) bool) (Account, []string) {
	b := &builder{r: r, dir: dir, invalid: invalid}
	b.a = Account{
		Name:              str(b.r.Name),
		Server:            str(b.r.Server),
		TLS:               TLSMode(str(b.r.TLS)),
		User:              str(b.r.User),
		Auth:              AuthMode(str(b.r.Auth)),
		AllowInsecureAuth: b.r.AllowInsecureAuth != nil && *b.r.AllowInsecureAuth,
		Keep:              b.r.Keep != nil && *b.r.Keep,
		AddReceived:       b.r.AddReceived == nil || *b.r.AddReceived,
		DeliveredTo:       b.r.DeliveredTo != nil && *b.r.DeliveredTo,
		EnvelopeTo:        b.r.EnvelopeTo != nil && *b.r.EnvelopeTo,
		ReturnPath:        b.r.ReturnPath != nil && *b.r.ReturnPath,
		Recipient:         str(b.r.Recipient),
		Timeout:           DefaultTimeout,
		MDATimeout:        DefaultMDATimeout,
		PollTimeout:       DefaultPollTimeout,
	}
	b.identity()
	b.connection()
	b.auth()
	b.tlsOptions()
	b.secrets()
	b.policies()
	b.target()
	b.timeouts()
	return b.a, b.problems
}

// builder holds an account being built from its raw form, and the
// problems found in it.
type builder struct {
	r        rawAccount
	dir      string // relative paths are resolved against it
	dirOpen  *bool  // whether other users can write in dir; nil until asked
	a        Account
	problems []string
	invalid  func(key string) bool // reports a key set to a value of the wrong type
}

// configDir is the absolute directory of the configuration file at path,
// its name's directory (symbolic links are not followed: the file is
// where the user named it). "" if the working directory is unknown.
func configDir(path string) string {
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return ""
	}
	return dir
}

// path expands a path-valued key (see ExpandPath) and resolves it against
// the configuration file's directory if it is relative.
func (b *builder) path(p string) string { return b.abs(ExpandPath(p)) }

// abs resolves an expanded path against the configuration file's
// directory if it is relative; "" stays "".
func (b *builder) abs(p string) string {
	if p == "" || filepath.IsAbs(p) || b.dir == "" {
		return p
	}
	if b.dirOpen == nil {
		open := writableByOthers(b.dir)
		b.dirOpen = &open
	}
	if *b.dirOpen {
		// Another user could put a CA file, a password file or a
		// program of theirs there before popfetch reads or runs it.
		b.bad("the relative path %q would be taken from %s, a directory other users can write in: write it as an absolute path (or with ~/)", p, b.dir)
	}
	return filepath.Join(b.dir, p)
}

// writableByOthers reports whether users other than this one (and root)
// can create files in dir: group or others may write in it (sticky or
// not: they still add names of their own), or another user owns it.
func writableByOthers(dir string) bool {
	fi, err := os.Stat(dir)
	if err != nil {
		return false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() && st.Uid != 0 {
		return true
	}
	return fi.Mode().Perm()&0o022 != 0
}

// command expands a command's "~" words and resolves a relative program
// with a slash in it ("./script", "bin/filter") against the configuration
// file's directory. A bare name is looked up in $PATH when run, as a
// shell does; the arguments are left alone (which of them are paths is
// the program's business).
func (b *builder) command(c Command) []string {
	argv := expandCommand(c)
	if len(argv) > 0 && strings.Contains(argv[0], "/") {
		argv[0] = b.abs(argv[0])
	}
	return argv
}

func (b *builder) bad(format string, args ...any) {
	b.problems = append(b.problems, fmt.Sprintf(format, args...))
}

// str is the value of an optional string, "" if unset.
func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// identity checks the name, the server and the user.
func (b *builder) identity() {
	switch {
	case b.a.Name == "":
		if !b.invalid("name") {
			b.bad("name is missing")
		}
	case !validName(b.a.Name):
		b.bad("name %q: use letters, digits and . _ @ + - only", b.a.Name)
	}
	if b.a.Server == "" {
		if !b.invalid("server") {
			b.bad("server is missing")
		}
	} else if strings.ContainsFunc(b.a.Server, func(r rune) bool { return r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
		// Also no control characters: the name is printed in messages
		// and by popfetch serverinfo.
		b.bad("server %q is not a host name or address", b.a.Server)
	}
	if b.a.User == "" && !b.invalid("user") {
		b.bad("user is missing")
	}
}

// connection sets the TLS mode, the port and pipelining.
func (b *builder) connection() {
	if b.a.TLS == "" {
		b.a.TLS = TLSImplicit
	}
	switch b.a.TLS {
	case TLSImplicit:
		b.a.Port = 995
	case TLSStartTLS, TLSNone:
		b.a.Port = 110
	default:
		b.bad("tls = %q: want \"implicit\", \"starttls\" or \"none\"", b.a.TLS)
	}
	if b.r.Port != nil {
		b.a.Port = *b.r.Port
		if b.a.Port < 1 || b.a.Port > 65535 {
			b.bad("port %d is out of range", b.a.Port)
		}
	}
	b.a.Pipelining = PipeliningMode(str(b.r.Pipelining))
	switch b.a.Pipelining {
	case "":
		b.a.Pipelining = fetch.PipeliningAuto
	case fetch.PipeliningAuto, fetch.PipeliningOn, fetch.PipeliningOff:
	default:
		b.bad("pipelining = %q: want \"auto\", \"on\" or \"off\"", b.a.Pipelining)
	}
}

// auth checks the authentication mode.
func (b *builder) auth() {
	if b.a.Auth == "" {
		b.a.Auth = AuthAuto
	}
	if !slices.Contains(AuthModes, b.a.Auth) {
		b.bad("auth = %q: want one of %s", b.a.Auth, joinModes(AuthModes))
	}
}

// tlsOptions sets the CA, the minimum version, pinning and the client
// certificate, none of which goes with tls = "none".
func (b *builder) tlsOptions() {
	if b.r.CAFile != nil {
		b.a.CAFile = b.path(*b.r.CAFile)
		if _, err := os.Stat(b.a.CAFile); err != nil {
			b.bad("ca_file: %v", err)
		}
		if b.a.TLS == TLSNone {
			b.bad("ca_file is set but tls = \"none\"")
		}
	}
	b.a.TLSMinVersion = tls.VersionTLS12
	switch v := str(b.r.TLSMinVersion); v {
	case "", "1.2":
	case "1.3":
		b.a.TLSMinVersion = tls.VersionTLS13
	default:
		b.bad("tls_min_version = %q: want \"1.2\" or \"1.3\"", v)
	}
	b.a.TLSFingerprint, b.a.TLSServerName = str(b.r.TLSFingerprint), str(b.r.TLSServerName)
	b.a.ClientCert, b.a.ClientKey = b.path(str(b.r.ClientCert)), b.path(str(b.r.ClientKey))
	if (b.a.ClientCert == "") != (b.a.ClientKey == "") {
		b.bad("set client_cert and client_key together")
	}
	if b.a.TLS == TLSNone {
		for _, k := range []struct {
			name string
			set  bool
		}{{"tls_fingerprint", b.r.TLSFingerprint != nil}, {"tls_min_version", b.r.TLSMinVersion != nil},
			{"tls_server_name", b.r.TLSServerName != nil}, {"client_cert", b.r.ClientCert != nil}} {
			if k.set {
				b.bad("%s is set but tls = \"none\"", k.name)
			}
		}
	}

}

// secrets takes the password from one of its sources, or from ~/.netrc,
// and the OAuth2 table; and refuses a password in the clear unless allowed.
func (b *builder) secrets() {
	sources := 0
	if b.r.Password != nil {
		sources++
		b.a.Password = Secret{value: *b.r.Password}
		if *b.r.Password == "" {
			b.bad("password is empty")
		}
	}
	if b.r.PasswordCommand != nil {
		sources++
		b.a.Password = Secret{command: b.command(*b.r.PasswordCommand)}
	}
	if b.r.PasswordFile != nil {
		sources++
		b.a.Password = Secret{file: b.path(*b.r.PasswordFile)}
	}
	if b.r.PasswordEnv != nil {
		sources++
		b.a.Password = Secret{env: *b.r.PasswordEnv}
		if !validEnvName(*b.r.PasswordEnv) {
			b.bad("password_env = %q is not an environment variable name", *b.r.PasswordEnv)
		}
	}
	if sources > 1 {
		b.bad("set only one of password, password_command, password_file and password_env")
	}
	if sources == 0 {
		// Looked up in ~/.netrc when needed, as fetchmail does.
		b.a.Password = Secret{machine: b.a.Server, login: b.a.User}
	}
	if b.r.OAuth2 != nil {
		o, problems := buildOAuth2(*b.r.OAuth2)
		for _, p := range problems {
			b.bad("oauth2: %s", p)
		}
		o.RefreshTokenFile = b.abs(o.RefreshTokenFile)
		b.a.OAuth2 = o
		if b.a.Auth != AuthAuto && !b.a.Auth.IsOAuth() {
			b.bad("an [account.oauth2] table needs auth = \"auto\", \"xoauth2\" or \"oauthbearer\", not %q", b.a.Auth)
		}
	}
	if b.a.Auth == AuthExternal && b.a.ClientCert == "" {
		b.bad("auth = \"external\" needs client_cert and client_key")
	}
	if b.a.TLS == TLSNone && !b.a.AllowInsecureAuth && !b.invalid("allow_insecure_auth") {
		b.bad("tls = \"none\" would send the password unencrypted: use tls = \"implicit\" or \"starttls\", or set allow_insecure_auth = true")
	}

}

// policies sets size_limit, delete_after, delete_larger_than, fetch_all
// and fetch_limit.
func (b *builder) policies() {
	if b.r.SizeLimit != nil {
		b.a.SizeLimit = int64(*b.r.SizeLimit)
	}
	if b.r.DeleteAfter != nil {
		b.a.DeleteAfter = time.Duration(*b.r.DeleteAfter)
		switch {
		case b.a.DeleteAfter < time.Minute:
			b.bad("delete_after %v: want a minute or more, e.g. \"30d\"", b.a.DeleteAfter)
		case b.r.Keep != nil && !*b.r.Keep:
			b.bad("delete_after keeps mail on the server until it is that old; it cannot go with keep = false")
		}
		b.a.Keep = true
	}
	if b.r.DeleteLargerThan != nil {
		b.a.DeleteLargerThan = int64(*b.r.DeleteLargerThan)
		if b.a.DeleteLargerThan == 0 {
			b.bad("delete_larger_than is 0: it would delete every message unread; leave it out instead")
		}
	}
	b.a.FetchAll = b.r.FetchAll != nil && *b.r.FetchAll
	if b.r.FetchLimit != nil {
		b.a.FetchLimit = *b.r.FetchLimit
		if b.a.FetchLimit < 0 {
			b.bad("fetch_limit %d is negative", b.a.FetchLimit)
		}
	}
}

// target sets the one delivery target.
func (b *builder) target() {
	var targets []string
	for _, t := range []struct {
		key string
		set bool
	}{{"maildir", b.r.Maildir != nil}, {"mda", b.r.MDA != nil}, {"mbox", b.r.Mbox != nil}, {"lmtp", b.r.LMTP != nil}, {"imap", b.r.IMAP != nil}, {"gmail", b.r.Gmail != nil}} {
		if t.set || b.invalid(t.key) { // a value of the wrong type is a target set, all the same
			targets = append(targets, t.key)
		}
	}
	switch {
	case len(targets) > 1:
		b.bad("set one delivery target, not %s", strings.Join(targets, " and "))
	case b.r.Maildir != nil:
		b.a.Maildir = b.path(*b.r.Maildir)
		if b.a.Maildir == "" {
			b.bad("maildir is empty")
		}
	case b.r.MDA != nil:
		b.a.MDA = b.command(*b.r.MDA)
	case b.r.Mbox != nil:
		b.a.Mbox = b.path(*b.r.Mbox)
		if b.a.Mbox == "" {
			b.bad("mbox is empty")
		}
	case b.r.LMTP != nil:
		b.a.LMTP = lmtpAddr(*b.r.LMTP)
		if err := checkLMTPAddr(b.a.LMTP); err != nil {
			b.bad("lmtp %q: %v", *b.r.LMTP, err)
		}
	case b.r.IMAP != nil:
		b.a.IMAP = b.imapTarget(*b.r.IMAP)
	case b.r.Gmail != nil:
		b.a.Gmail = b.gmailTarget(*b.r.Gmail)
	case b.invalid("maildir") || b.invalid("mda") || b.invalid("mbox") || b.invalid("lmtp") || b.invalid("imap") || b.invalid("gmail"):
	default:
		b.bad("no delivery target: set maildir, mbox, mda, lmtp, or an [account.imap] or [account.gmail] table")
	}
	if b.r.LMTPRecipients != nil {
		b.a.LMTPRecipients = *b.r.LMTPRecipients
		if b.a.LMTP == "" {
			b.bad("lmtp_recipients is set, but the delivery target is not lmtp")
		}
		for _, rc := range b.a.LMTPRecipients {
			if rc == "" || strings.ContainsFunc(rc, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '<' || r == '>' }) {
				b.bad("lmtp_recipients: %q is not an address", rc)
			}
		}
	}
}

// timeouts sets the recipient's default and the durations.
func (b *builder) timeouts() {
	if b.a.Recipient == "" {
		b.a.Recipient = currentUser()
	}
	for _, d := range []struct {
		name string
		src  *Duration
		dst  *time.Duration
	}{{"timeout", b.r.Timeout, &b.a.Timeout}, {"mda_timeout", b.r.MDATimeout, &b.a.MDATimeout}, {"poll_timeout", b.r.PollTimeout, &b.a.PollTimeout}, {"interval", b.r.Interval, &b.a.Interval}} {
		if d.src == nil {
			continue
		}
		*d.dst = time.Duration(*d.src)
		if *d.dst < time.Second {
			b.bad("%s %v is shorter than a second", d.name, *d.dst)
		}
	}
}

// lmtpAddr expands a socket path ("~/", "$VAR", "unix:" before it); a
// "host:port" is left as it is.
func lmtpAddr(v string) string {
	if p, ok := strings.CutPrefix(v, "unix:"); ok {
		return ExpandPath(p)
	}
	if strings.ContainsAny(v, "/~$") {
		return ExpandPath(v)
	}
	return v
}

func checkLMTPAddr(v string) error {
	switch {
	case v == "":
		return errors.New("empty")
	case strings.HasPrefix(v, "/"):
		return nil
	case strings.Contains(v, "/"):
		return errors.New("a socket's path must be absolute")
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil || host == "" || port == "" {
		return errors.New(`want a Unix socket's path or "host:port"`)
	}
	return nil
}

func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

// ExpandPath expands a leading "~" or "~/" to the home directory, then
// $VAR and ${VAR} from the environment.
func ExpandPath(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[1:])
		}
	}
	return os.ExpandEnv(p)
}

func expandCommand(c Command) []string {
	out := append([]string(nil), c...)
	for i, w := range out {
		if w == "~" || strings.HasPrefix(w, "~/") {
			out[i] = ExpandPath(w)
		}
	}
	return out
}

// suggest returns the known key closest to k, if it is close.
func suggest(k string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	return Nearest(k, names)
}

// editDistance is the optimal string alignment distance of a and b: the
// fewest insertions, deletions, substitutions and swaps of neighbouring
// bytes that turn one into the other.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
