package config

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/popfetch/popfetch/fetch"
	"time"
)

const minimal = `
[[account]]
name = "work"
server = "pop.example.com"
user = "me@example.com"
password = "secret"
maildir = "/tmp/Mail/work"
`

// noTarget is minimal without its delivery target.
var noTarget = strings.Replace(minimal, "maildir = \"/tmp/Mail/work\"\n", "", 1)

func TestParseDefaults(t *testing.T) {
	cfg, err := Parse("c.toml", minimal)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Accounts[0]
	if a.TLS != TLSImplicit || a.Port != 995 || a.Auth != AuthAuto || a.Keep || !a.AddReceived ||
		a.Timeout != DefaultTimeout || a.MDATimeout != DefaultMDATimeout || a.Interval != 0 || a.Pipelining != "auto" ||
		a.SizeLimit != 0 || a.FetchLimit != 0 || a.Recipient == "" {
		t.Fatalf("defaults wrong: %+v", a)
	}
	if cfg.Daemon != (Daemon{MaxBackoff: time.Hour}) {
		t.Errorf("daemon defaults: %+v", cfg.Daemon)
	}
	if got, _ := a.Password.Resolve(context.Background()); got != "secret" {
		t.Errorf("password %q", got)
	}
	if strings.Contains(a.Password.String(), "secret") {
		t.Errorf("Secret.String reveals the password: %s", a.Password)
	}
}

func TestParseFull(t *testing.T) {
	t.Setenv("MAILROOT", "/srv/mail")
	home, _ := os.UserHomeDir()
	cfg, err := Parse("c.toml", `
[daemon]
max_concurrent_polls = 8
max_sessions_per_server = 3
max_backoff = "30m"

[defaults]
interval = "10m"
keep = true
size_limit = "50MiB"
password_command = "pass show 'mail/all users'"
maildir = "$MAILROOT/inbox"

[[account]]
name = "work"
server = "pop.example.com"
tls = "starttls"
user = "me"
fetch_limit = 100
timeout = 30
add_received = false

[[account]]
name = "home"
server = "127.0.0.1"
port = 1110
tls = "none"
allow_insecure_auth = true
auth = "apop"
user = "me"
password_file = "~/.pw"
keep = false
mda = ["/usr/bin/procmail", "-f", "%F", "-d", "%T"]
recipient = "alice"
`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Daemon != (Daemon{MaxConcurrentPolls: 8, MaxSessionsPerServer: 3, MaxBackoff: 30 * time.Minute}) {
		t.Errorf("daemon: %+v", cfg.Daemon)
	}
	w, h := cfg.Accounts[0], cfg.Accounts[1]
	if w.TLS != TLSStartTLS || w.Port != 110 || !w.Keep || w.SizeLimit != 50<<20 || w.FetchLimit != 100 ||
		w.Timeout != 30*time.Second || w.AddReceived || w.Interval != 10*time.Minute || w.Maildir != "/srv/mail/inbox" {
		t.Errorf("work: %+v", w)
	}
	if !reflect.DeepEqual(w.Password.command, []string{"pass", "show", "mail/all users"}) {
		t.Errorf("work password_command %q", w.Password.command)
	}
	if h.Port != 1110 || h.Keep || h.Auth != AuthAPOP || h.Password.file != filepath.Join(home, ".pw") ||
		h.Maildir != "" || !reflect.DeepEqual(h.MDA, []string{"/usr/bin/procmail", "-f", "%F", "-d", "%T"}) || h.Recipient != "alice" {
		t.Errorf("home: %+v", h)
	}
	sel, err := cfg.Select([]string{"home"})
	if err != nil || len(sel) != 1 || sel[0].Name != "home" {
		t.Errorf("Select = %v, %v", sel, err)
	}
	if _, err := cfg.Select([]string{"nope"}); err == nil {
		t.Error("Select of an unknown account succeeded")
	}
}

// noPassword is minimal without a password source.
var noPassword = strings.Replace(minimal, "password = \"secret\"\n", "", 1)

func TestParseAuth(t *testing.T) {
	for _, m := range AuthModes {
		cfg, err := Parse("c.toml", minimal+"client_cert = '/c.pem'\nclient_key = '/c.key'\nauth = '"+string(m)+"'\n")
		if err != nil || cfg.Accounts[0].Auth != m {
			t.Errorf("auth = %q: %v", m, err)
		}
	}
	// No password source: ~/.netrc at run time.
	cfg, err := Parse("c.toml", noPassword)
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Accounts[0].Password; s.IsSet() || s.String() != "~/.netrc" || s.machine != "pop.example.com" || s.login != "me@example.com" {
		t.Errorf("no source: %+v", s)
	}
	cfg, err = Parse("c.toml", noPassword+"password_env = 'POP_PW'\n")
	if err != nil || cfg.Accounts[0].Password.String() != "password_env POP_PW" {
		t.Fatalf("password_env: %v", err)
	}
}

func TestParseOAuth2(t *testing.T) {
	tests := []struct {
		name, table string
		want        OAuth2
	}{
		{"google", "provider = 'google'\nclient_id = 'id'\nclient_secret = 'cs'\n", OAuth2{Provider: "google",
			TokenURL: "https://oauth2.googleapis.com/token", DeviceAuthURL: "https://oauth2.googleapis.com/device/code",
			AuthURL: "https://accounts.google.com/o/oauth2/v2/auth", Flow: FlowLoopback,
			AuthParams: map[string]string{"access_type": "offline", "prompt": "consent"},
			ClientID:   "id", ClientSecret: "cs", Scopes: []string{"https://mail.google.com/"}}},
		{"google, device flow", "provider = 'google'\nflow = 'device'\nclient_id = 'id'\n", OAuth2{Provider: "google",
			TokenURL: "https://oauth2.googleapis.com/token", DeviceAuthURL: "https://oauth2.googleapis.com/device/code",
			AuthURL: "https://accounts.google.com/o/oauth2/v2/auth", Flow: FlowDevice,
			AuthParams: map[string]string{"access_type": "offline", "prompt": "consent"},
			ClientID:   "id", Scopes: []string{"https://mail.google.com/"}}},
		{"microsoft, tenant", "provider = 'microsoft'\ntenant = 'contoso.onmicrosoft.com'\nclient_id = 'id'\nrefresh_token_file = '/tmp/rt'\n", OAuth2{Provider: "microsoft", Tenant: "contoso.onmicrosoft.com",
			TokenURL: "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token", DeviceAuthURL: "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode",
			AuthURL: "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize", Flow: FlowDevice,
			ClientID: "id", Scopes: []string{"https://outlook.office.com/POP.AccessAsUser.All", "offline_access"}, RefreshTokenFile: "/tmp/rt"}},
		{"own endpoints", "token_url = 'http://127.0.0.1:8080/token'\nclient_id = 'id'\nscopes = ['pop']\n", OAuth2{
			TokenURL: "http://127.0.0.1:8080/token", Flow: FlowDevice, ClientID: "id", Scopes: []string{"pop"}}},
		{"own endpoints, loopback", "token_url = 'http://127.0.0.1:8080/token'\nauth_url = 'https://idp.example/auth'\nclient_id = 'id'\n", OAuth2{
			TokenURL: "http://127.0.0.1:8080/token", AuthURL: "https://idp.example/auth", Flow: FlowLoopback, ClientID: "id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("c.toml", noPassword+"[account.oauth2]\n"+tt.table)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Accounts[0].OAuth2; got == nil || !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string // each must appear in the error
	}{
		{"unknown key with path", minimal + "pasword = 'x'\n", []string{`account[1].pasword: unknown key (did you mean "password"?)`}},
		{"unknown key in second account", minimal + strings.Replace(minimal, `"work"`, `"two"`, 1) + "kep = true\n",
			[]string{`account[2].kep: unknown key (did you mean "keep"?)`}},
		{"unknown table", "[defualts]\n" + minimal, []string{`defualts: unknown key (did you mean "defaults"?)`}},
		{"unknown default", "[defaults]\nintervall = '1m'\n" + minimal, []string{`defaults.intervall: unknown key`}},
		{"no accounts", "[defaults]\nkeep = true\n", []string{"no [[account]] tables"}},
		{"missing fields", "[[account]]\nname = 'x'\n", []string{"server is missing", "user is missing", "no delivery target"}},
		{"bad tls", strings.Replace(minimal, `user =`, "tls = 'ssl'\nuser =", 1), []string{`tls = "ssl"`}},
		{"plaintext password", strings.Replace(minimal, `user =`, "tls = 'none'\nuser =", 1), []string{"allow_insecure_auth"}},
		{"two password sources", minimal + "password_file = '/x'\n", []string{"only one of password"}},
		{"both targets", minimal + "mda = 'procmail'\n", []string{"set one delivery target, not maildir and mda"}},
		{"oauth2 flow unknown", minimal + "[account.oauth2]\nprovider = 'google'\nclient_id = 'x'\nflow = 'browser'\n", []string{`flow = "browser": want "loopback"`}},
		{"oauth2 loopback without auth_url", minimal + "[account.oauth2]\ntoken_url = 'https://t.example/'\nclient_id = 'x'\nflow = 'loopback'\n", []string{`flow = "loopback" needs auth_url`}},
		{"oauth2 auth_url plain http", minimal + "[account.oauth2]\ntoken_url = 'https://t.example/'\nclient_id = 'x'\nauth_url = 'http://idp.example/auth'\n", []string{`auth_url "http://idp.example/auth": must be https://`}},
		{"three targets", minimal + "mbox = '/m'\nlmtp = '/s'\n", []string{"set one delivery target, not maildir and mbox and lmtp"}},
		{"lmtp relative socket", noTarget + "lmtp = 'run/lmtp'\n", []string{`lmtp "run/lmtp": a socket's path must be absolute`}},
		{"lmtp no port", noTarget + "lmtp = 'localhost'\n", []string{`lmtp "localhost": want a Unix socket's path or "host:port"`}},
		{"lmtp_recipients without lmtp", minimal + "lmtp_recipients = ['a@b']\n", []string{"lmtp_recipients is set, but the delivery target is not lmtp"}},
		{"lmtp_recipients not addresses", noTarget + "lmtp = '/s'\nlmtp_recipients = ['a b', '']\n", []string{`lmtp_recipients: "a b" is not an address`, `lmtp_recipients: "" is not an address`}},
		{"duplicate name", minimal + minimal, []string{`another account is also named "work"`}},
		{"bad name", strings.Replace(minimal, `"work"`, `"my work"`, 1), []string{`name "my work"`}},
		{"bad port", minimal + "port = 70000\n", []string{"port 70000"}},
		{"bad size", minimal + "size_limit = '5 parsecs'\n", []string{"bad size"}},
		{"bad duration", minimal + "timeout = 'soon'\n", []string{"bad duration"}},
		{"delete_after with keep = false", minimal + "keep = false\ndelete_after = '30d'\n", []string{"cannot go with keep = false"}},
		{"delete_after too short", minimal + "delete_after = '10s'\n", []string{"delete_after 10s"}},
		{"delete_after bad", minimal + "delete_after = '30 days'\n", []string{"bad duration"}},
		{"delete_larger_than 0", minimal + "delete_larger_than = 0\n", []string{"delete_larger_than is 0"}},
		{"short timeout", minimal + "timeout = '10ms'\n", []string{"timeout 10ms"}},
		{"empty mda", strings.Replace(minimal, `maildir = "/tmp/Mail/work"`, `mda = []`, 1), []string{"command is empty"}},
		{"server with a space", strings.Replace(minimal, `"pop.example.com"`, `"pop example.com"`, 1), []string{"is not a host name or address"}},
		{"server with a control character", strings.Replace(minimal, `"pop.example.com"`, `"pop.example.com\u001b[2J"`, 1),
			[]string{`server "pop.example.com\x1b[2J" is not a host name or address`}},
		{"bad auth", minimal + "auth = 'kerberos'\n", []string{`auth = "kerberos"`}},
		{"bad pipelining", minimal + "pipelining = 'yes'\n", []string{`pipelining = "yes"`}},
		{"wrong type", minimal + "keep = 'yes'\n", []string{"keep"}},
		{"daemon limits", "[daemon]\nmax_concurrent_polls = 0\nmax_sessions_per_server = -1\nmax_backoff = '1ms'\n" + minimal,
			[]string{"daemon.max_concurrent_polls 0", "daemon.max_sessions_per_server -1", "daemon.max_backoff 1ms"}},
		{"unknown daemon key", "[daemon]\nmax_polls = 3\n" + minimal, []string{"daemon.max_polls: unknown key"}},
		{"bad tls_min_version", minimal + "tls_min_version = '1.1'\n", []string{`tls_min_version = "1.1"`}},
		{"client_cert alone", minimal + "client_cert = '/c.pem'\n", []string{"client_cert and client_key together"}},
		{"pin on plaintext", strings.Replace(minimal, `user =`, "tls = 'none'\nallow_insecure_auth = true\ntls_fingerprint = 'ab'\nuser =", 1),
			[]string{`tls_fingerprint is set but tls = "none"`}},
		{"missing ca_file", minimal + "ca_file = '/nonexistent/ca.pem'\n", []string{"ca_file"}},
		{"password_env and password", minimal + "password_env = 'PW'\n", []string{"only one of password, password_command, password_file and password_env"}},
		{"bad password_env", noPassword + "password_env = 'MY PW'\n", []string{`password_env = "MY PW"`}},
		{"external without certificate", minimal + "auth = 'external'\n", []string{`auth = "external" needs client_cert`}},
		{"oauth2 without client_id", noPassword + "[account.oauth2]\nprovider = 'google'\n", []string{"oauth2: client_id is missing"}},
		{"oauth2 unknown provider", noPassword + "[account.oauth2]\nprovider = 'yahoo'\nclient_id = 'x'\n", []string{`oauth2: provider = "yahoo"`, "token_url is missing"}},
		{"oauth2 plain http", noPassword + "[account.oauth2]\ntoken_url = 'http://example.com/token'\nclient_id = 'x'\n", []string{"must be https://"}},
		{"oauth2 with a password mode", noPassword + "auth = 'plain'\n[account.oauth2]\nprovider = 'google'\nclient_id = 'x'\n", []string{`needs auth = "auto", "xoauth2" or "oauthbearer", not "plain"`}},
		{"oauth2 tenant without microsoft", noPassword + "[account.oauth2]\ntoken_url = 'https://x/t'\ntenant = 'abc'\nclient_id = 'x'\n", []string{"tenant is set without"}},
		{"oauth2 unknown key", noPassword + "[account.oauth2]\nprovider = 'google'\nclient_id = 'x'\nscope = ['a']\n", []string{`account[1].oauth2.scope: unknown key (did you mean "scopes"?)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.toml", tt.text)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestParseTLSKeys(t *testing.T) {
	cfg, err := Parse("c.toml", minimal+`tls_fingerprint = "AB:CD"
tls_min_version = "1.3"
tls_server_name = "pop.example.net"
client_cert = "~/c.pem"
client_key = "~/c.key"
`)
	if err != nil {
		t.Fatal(err)
	}
	home, _ := os.UserHomeDir()
	a := cfg.Accounts[0]
	if a.TLSFingerprint != "AB:CD" || a.TLSMinVersion != tls.VersionTLS13 || a.TLSServerName != "pop.example.net" ||
		a.ClientCert != filepath.Join(home, "c.pem") || a.ClientKey != filepath.Join(home, "c.key") {
		t.Errorf("%+v", a)
	}
	cfg, _ = Parse("c.toml", minimal)
	if cfg.Accounts[0].TLSMinVersion != tls.VersionTLS12 {
		t.Errorf("default tls_min_version %x", cfg.Accounts[0].TLSMinVersion)
	}
}

func TestSyntaxErrorPosition(t *testing.T) {
	_, err := Parse("c.toml", "[[account]]\nname = 'x\nserver = 'y'\n")
	var serr *SyntaxError
	if !errors.As(err, &serr) || serr.Line != 2 || serr.Column == 0 {
		t.Fatalf("got %#v", err)
	}
	if !strings.HasPrefix(err.Error(), "c.toml:2:") {
		t.Errorf("message %q", err)
	}
}

func TestLoadPermissions(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.toml")
	os.WriteFile(p, []byte(minimal), 0o644)
	_, err := Load(p)
	var perr *PermissionError
	if !errors.As(err, &perr) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable file with a password: %v", err)
	}
	os.Chmod(p, 0o600)
	if _, err := Load(p); err != nil {
		t.Fatalf("mode 600: %v", err)
	}
	// Without a literal password the file may be readable.
	os.WriteFile(p, []byte(strings.Replace(minimal, `password = "secret"`, `password_command = "pass show x"`, 1)), 0o644)
	if _, err := Load(p); err != nil {
		t.Fatalf("no password, mode 644: %v", err)
	}
}

func TestSecretSources(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pw")
	os.WriteFile(f, []byte("from-file\nsecond line\n"), 0o600)
	ctx := context.Background()
	if got, err := (Secret{file: f}).Resolve(ctx); err != nil || got != "from-file" {
		t.Errorf("file: %q, %v", got, err)
	}
	os.Chmod(f, 0o640)
	var perr *PermissionError
	if _, err := (Secret{file: f}).Resolve(ctx); !errors.As(err, &perr) {
		t.Errorf("group-readable password_file: %v", err)
	}
	if got, err := (Secret{command: []string{"printf", `from-cmd\r\nrest`}}).Resolve(ctx); err != nil || got != "from-cmd" {
		t.Errorf("command: %q, %v", got, err)
	}
	_, err := (Secret{command: []string{"sh", "-c", "echo leaked-secret; exit 3"}}).Resolve(ctx)
	if err == nil || strings.Contains(err.Error(), "leaked-secret") {
		t.Errorf("failing command: %v", err)
	}
	if _, err := (Secret{command: []string{"true"}}).Resolve(ctx); err == nil {
		t.Error("empty output accepted")
	}
}

func TestSecretEnv(t *testing.T) {
	t.Setenv("POPFETCH_TEST_PW", "from-env")
	if got, err := (Secret{env: "POPFETCH_TEST_PW"}).Resolve(context.Background()); err != nil || got != "from-env" {
		t.Fatalf("env: %q, %v", got, err)
	}
	t.Setenv("POPFETCH_TEST_PW", "")
	_, err := (Secret{env: "POPFETCH_TEST_PW"}).Resolve(context.Background())
	if err == nil || !strings.Contains(err.Error(), "$POPFETCH_TEST_PW is not set") {
		t.Fatalf("unset env: %v", err)
	}
}

func TestSecretNetrc(t *testing.T) {
	dir := t.TempDir()
	netrc := filepath.Join(dir, "netrc")
	os.WriteFile(netrc, []byte(`# mail
machine ftp.example.com login me password ftp-pw
machine POP.example.com
	login other password other-pw
machine pop.example.com login me password "pop pw \"quoted\""
macdef init
machine pop.example.com login me password from-macro

machine pop.two.example password #hash-pw
default login me password default-pw
`), 0o600)
	ctx := context.Background()
	tests := []struct{ machine, login, want string }{
		{"pop.example.com", "me", `pop pw "quoted"`},
		{"pop.example.com", "other", "other-pw"},
		{"pop.two.example", "anyone", "#hash-pw"},
		{"elsewhere.example", "me", "default-pw"},
	}
	for _, tt := range tests {
		got, err := (Secret{machine: tt.machine, login: tt.login, netrc: netrc}).Resolve(ctx)
		if err != nil || got != tt.want {
			t.Errorf("%s %s: %q, %v; want %q", tt.machine, tt.login, got, err, tt.want)
		}
	}
	if _, err := (Secret{machine: "elsewhere.example", login: "you", netrc: netrc}).Resolve(ctx); !errors.Is(err, ErrNoPassword) {
		t.Errorf("no entry: %v", err)
	}
	if _, err := (Secret{machine: "x", login: "y", netrc: filepath.Join(dir, "none")}).Resolve(ctx); !errors.Is(err, ErrNoPassword) {
		t.Errorf("no file: %v", err)
	}
	os.Chmod(netrc, 0o644)
	var perr *PermissionError
	if _, err := (Secret{machine: "pop.example.com", login: "me", netrc: netrc}).Resolve(ctx); !errors.As(err, &perr) {
		t.Errorf("world-readable netrc: %v", err)
	}
	// $NETRC names the file.
	os.Chmod(netrc, 0o600)
	t.Setenv("NETRC", netrc)
	if got, err := (Secret{machine: "pop.example.com", login: "me"}).Resolve(ctx); err != nil || got != `pop pw "quoted"` {
		t.Errorf("$NETRC: %q, %v", got, err)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"1234", 1234, true}, {"50MiB", 50 << 20, true}, {"10M", 10 << 20, true},
		{"500k", 500 << 10, true}, {"1GB", 1e9, true}, {"1.5KiB", 1536, true}, {" 2 MB ", 2e6, true},
		{"", 0, false}, {"MiB", 0, false}, {"-1", 0, false}, {"5 parsecs", 0, false}, {"1e400", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v", tt.in, got, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90s", 90 * time.Second, true}, {"1h30m", 90 * time.Minute, true}, {"30d", 30 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true}, {" 2d ", 48 * time.Hour, true}, {"0d", 0, true},
		{"d", 0, false}, {"-1d", 0, false}, {"1.5d", 0, false}, {"30 days", 0, false}, {"1d-1h", 0, false},
		{"999999999d", 0, false}, {"", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func TestParsePolicies(t *testing.T) {
	cfg, err := Parse("c.toml", minimal+"delete_after = '30d'\ndelete_larger_than = '20MiB'\nfetch_all = true\n")
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Accounts[0]
	if a.DeleteAfter != 30*24*time.Hour || !a.Keep || a.DeleteLargerThan != 20<<20 || !a.FetchAll {
		t.Errorf("got delete_after %v keep %v delete_larger_than %d fetch_all %v", a.DeleteAfter, a.Keep, a.DeleteLargerThan, a.FetchAll)
	}
	cfg, _ = Parse("c.toml", minimal)
	if a := cfg.Accounts[0]; a.DeleteAfter != 0 || a.Keep || a.DeleteLargerThan != 0 || a.FetchAll {
		t.Errorf("defaults: %+v", a)
	}
}

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		ok   bool
	}{
		{"procmail -d %T", []string{"procmail", "-d", "%T"}, true},
		{`pass show 'mail/my work'`, []string{"pass", "show", "mail/my work"}, true},
		{`a "b \"c\" \$d \x" e\ f`, []string{"a", `b "c" $d \x`, "e f"}, true},
		{`a''b ""`, []string{"ab", ""}, true},
		{"  ", nil, true},
		{"a 'b", nil, false},
		{`a "b`, nil, false},
		{"a | b > c", []string{"a", "|", "b", ">", "c"}, true},
	}
	for _, tt := range tests {
		got, err := SplitWords(tt.in)
		if (err == nil) != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitWords(%q) = %q, %v", tt.in, got, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(minimal)
	f.Add("[defaults]\nkeep = true\n" + minimal)
	f.Add("[[account]]\nmda = 'a \"b'\n")
	f.Fuzz(func(t *testing.T, text string) {
		cfg, err := Parse("f.toml", text)
		if err == nil && len(cfg.Accounts) == 0 {
			t.Fatal("no error and no accounts")
		}
	})
}

// TestPasswordEnvOverridesDefault: password_env is one of the password
// keys, so an account that sets it takes no other password key from
// [defaults].
func TestPasswordEnvOverridesDefault(t *testing.T) {
	cfg, err := Parse("c.toml", `
[defaults]
password_command = "pass show mail"
maildir = "/m"
[[account]]
name = "a"
server = "pop.example.com"
user = "me"
password_env = "POP_PW"
`)
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Accounts[0].Password; p.env != "POP_PW" || p.command != nil {
		t.Errorf("password: env %q, command %q; want the account's password_env alone", p.env, p.command)
	}
}

func TestParseTargetsAndHeaders(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	for _, tc := range []struct {
		keys string
		want func(a Account) bool
	}{
		{"mbox = '/var/mail/me'\n", func(a Account) bool { return a.Mbox == "/var/mail/me" && a.Maildir == "" }},
		{"lmtp = '/run/dovecot/lmtp'\n", func(a Account) bool { return a.LMTP == "/run/dovecot/lmtp" && a.LMTPRecipients == nil }},
		{"lmtp = 'unix:$XDG_RUNTIME_DIR/lmtp'\n", func(a Account) bool { return a.LMTP == "/run/user/1000/lmtp" }},
		{"lmtp = '127.0.0.1:24'\nlmtp_recipients = ['a@x', 'b@x']\n", func(a Account) bool {
			return a.LMTP == "127.0.0.1:24" && reflect.DeepEqual(a.LMTPRecipients, []string{"a@x", "b@x"})
		}},
		{"lmtp = '[::1]:24'\n", func(a Account) bool { return a.LMTP == "[::1]:24" }},
		{"mbox = '/m'\ndelivered_to = true\nenvelope_to = true\nreturn_path = true\n", func(a Account) bool {
			return a.DeliveredTo && a.EnvelopeTo && a.ReturnPath
		}},
		{"mbox = '/m'\n", func(a Account) bool { return !a.DeliveredTo && !a.EnvelopeTo && !a.ReturnPath && a.AddReceived }},
	} {
		cfg, err := Parse("c.toml", noTarget+tc.keys)
		if err != nil {
			t.Errorf("%q: %v", tc.keys, err)
			continue
		}
		if a := cfg.Accounts[0]; !tc.want(a) {
			t.Errorf("%q: got %+v", tc.keys, a)
		}
	}
	// A default target is replaced by the account's, whichever kind.
	cfg, err := Parse("c.toml", "[defaults]\nlmtp = '/s'\nlmtp_recipients = ['a@x']\n"+noTarget+"mbox = '/m'\n")
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Accounts[0]; a.Mbox != "/m" || a.LMTP != "" || a.LMTPRecipients != nil {
		t.Errorf("defaults merged into another target: %+v", a)
	}
}

// TestSyntaxErrorHidesSecrets: a file that does not parse never has its
// password quoted back: a world-readable one is refused for its
// permissions (exit 6) before its syntax is judged, and a mode-600 one's
// syntax error masks what the parser quotes.
func TestSyntaxErrorHidesSecrets(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.toml")
	broken := "[[account]]\nname = \"x\"\nserver = \"pop.example.com\"\nuser = \"me\"\npassword = abcdefSECRETxyz\n"
	os.WriteFile(p, []byte(broken), 0o644)
	_, err := Load(p)
	var perr *PermissionError
	if !errors.As(err, &perr) || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("world-readable, broken: %v", err)
	}
	os.Chmod(p, 0o600)
	_, err = Load(p)
	var serr *SyntaxError
	if !errors.As(err, &serr) || serr.Line != 5 || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("mode 600, broken: %v", err)
	}
	for _, text := range []string{
		"password = \"abc\\qSECRET\"\n",        // a bad escape
		"password = 'abcSECRET\n",              // unterminated literal
		"[[account]]\npassword = \"\"\"SECRET", // unterminated multi-line
		"x = 1 SECRET\n",
		"[[account]]\npassword = 98765432109876543210987\n", // out of range, unquoted
		"[[account]]\npassword = 1e98765432\n",
	} {
		if _, err := Parse("c.toml", text); err == nil || strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "98765432") {
			t.Errorf("Parse(%q): %v", text, err)
		}
	}
}

// TestPasswordFileOpenedOnce: password_file is judged by the file read:
// not a directory or FIFO, not readable by others.
func TestPasswordFileOpenedOnce(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := (Secret{file: dir}).Resolve(ctx); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory: %v", err)
	}
	// A FIFO with no writer: refused at once, not waited on for ever
	// (popfetch would hold the state file meanwhile).
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err == nil {
		done := make(chan error, 1)
		go func() { _, err := (Secret{file: fifo}).Resolve(ctx); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("a FIFO: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("reading a FIFO as password_file hangs")
		}
	}
}

// TestModesAreFetchs: every value the configuration accepts for tls, auth
// and pipelining is one fetch knows: the types are fetch's, and what
// Parse accepts is checked against fetch's lists.
func TestModesAreFetchs(t *testing.T) {
	for _, m := range AuthModes {
		if !slices.Contains(fetch.AuthModes, m) {
			t.Errorf("auth = %q is accepted but unknown to fetch", m)
		}
		text := strings.Replace(minimal, "[[account]]", "[[account]]\nauth = \""+string(m)+"\"", 1)
		if strings.Contains(string(m), "oauth") || m == AuthExternal {
			continue // need more keys; their parsing is tested elsewhere
		}
		if _, err := Parse("c.toml", text); err != nil {
			t.Errorf("auth = %q: %v", m, err)
		}
	}
	for _, v := range []string{"implicit", "starttls", "none"} {
		cfg, err := Parse("c.toml", strings.Replace(minimal, "[[account]]", "[[account]]\ntls = \""+v+"\"\nallow_insecure_auth = true", 1))
		if err != nil || !slices.Contains([]fetch.TLSMode{fetch.TLSImplicit, fetch.TLSStartTLS, fetch.TLSNone}, cfg.Accounts[0].TLS) {
			t.Errorf("tls = %q: %v", v, err)
		}
	}
	for _, v := range []string{"auto", "on", "off"} {
		cfg, err := Parse("c.toml", strings.Replace(minimal, "[[account]]", "[[account]]\npipelining = \""+v+"\"", 1))
		if err != nil || !slices.Contains([]fetch.PipeliningMode{fetch.PipeliningAuto, fetch.PipeliningOn, fetch.PipeliningOff}, cfg.Accounts[0].Pipelining) {
			t.Errorf("pipelining = %q: %v", v, err)
		}
	}
	if _, err := Parse("c.toml", strings.Replace(minimal, "[[account]]", "[[account]]\nauth = \"digest-md5\"", 1)); err == nil {
		t.Error("an unknown auth mode was accepted")
	}
}

// TestAllProblemsAtOnce: a file with keys of the wrong type, unknown keys
// and values that fail the checks is reported in one run, every problem
// with its key's path (account[N].key, as unknown keys are named) and,
// for a type, what was wanted and what was found; never a password's
// value; and a key of the wrong type does not also count as missing.
func TestAllProblemsAtOnce(t *testing.T) {
	text := `[defaults]
interval = true

[[account]]
name = "work"
server = "pop.example.com"
user = "me"
password = 1234567
keep = "yes"
port = "995"
kep = true
maildir = "/tmp/x"
size_limit = [1]
fetch_limit = -1

[[account]]
name = 7
server = "pop2.example.com"
user = "me"
password = "x"
mda = ["procmail", 3]
tls = "none"
allow_insecure_auth = "yes"
lmtp_recipients = "a@b"
`
	_, err := Parse("c.toml", text)
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("got %v, want an *Error", err)
	}
	want := []string{
		`account[1].keep: expected true or false, found "yes"`,
		`account[1].kep: unknown key (did you mean "keep"?)`,
		`account[1].password: expected a string, found a number`,
		`account[1].port: expected an integer, found "995"`,
		`account[1].size_limit: expected a size, an integer or a string like "50MiB"; found a list`,
		`account[2].allow_insecure_auth: expected true or false, found "yes"`,
		`account[2].lmtp_recipients: expected a list of strings, found "a@b"`,
		`account[2].mda: command element 2: expected a string, found 3`,
		`account[2].name: expected a string, found 7`,
		`defaults.interval: expected a duration, a string like "5m" or a number of seconds; found true`,
		`account[1] ("work"): fetch_limit -1 is negative`,
	}
	if !reflect.DeepEqual(cerr.Problems, want) {
		t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(cerr.Problems, "\n  "), strings.Join(want, "\n  "))
	}
	if strings.Contains(err.Error(), "1234567") {
		t.Errorf("the error shows the password: %v", err)
	}
}

// TestNearest: a typo is at most two edits away, a swap of neighbouring
// letters is one, and a short word is not matched to anything at all.
func TestNearest(t *testing.T) {
	for _, tc := range []struct {
		s    string
		in   []string
		want string
	}{
		{"fecth", []string{"fetch", "check"}, "fetch"},
		{"chek", []string{"fetch", "check"}, "check"},
		{"wrok", []string{"work", "home"}, "work"},
		{"Work", []string{"work"}, "work"},
		{"xyzzy", []string{"fetch", "check"}, ""},
		{"ab", []string{"cd"}, ""},
		{strings.Repeat("a", 1000), []string{strings.Repeat("a", 999)}, ""},
	} {
		if got := Nearest(tc.s, tc.in); got != tc.want {
			t.Errorf("Nearest(%.10q, %q) = %q, want %q", tc.s, tc.in, got, tc.want)
		}
	}
}
