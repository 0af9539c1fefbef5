package config

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// TestParseIMAP: an [account.imap] table is the delivery target, with
// its defaults: port 993, implicit TLS, INBOX, no flags.
func TestParseIMAP(t *testing.T) {
	cfg, err := Parse("c.toml", noTarget+`
[account.imap]
server = "imap.example.com"
user = "me@example.net"
password = "app-password"
`)
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Accounts[0].IMAP
	if m == nil {
		t.Fatal("no IMAP target")
	}
	want := IMAP{Server: "imap.example.com", Port: 993, TLS: TLSImplicit, TLSMinVersion: m.TLSMinVersion,
		User: "me@example.net", Password: Secret{value: "app-password"}, Auth: AuthAuto, Folder: "INBOX"}
	if !reflect.DeepEqual(*m, want) {
		t.Errorf("got %+v\nwant %+v", *m, want)
	}
	cfg, err = Parse("c.toml", noTarget+`
[account.imap]
server = "imap.gmail.com"
tls = "starttls"
user = "me@gmail.com"
auth = "xoauth2"
folder = "POP/work"
flags = ['\Seen', "popfetch"]
[account.imap.oauth2]
provider = "microsoft"
client_id = "id"
`)
	if err != nil {
		t.Fatal(err)
	}
	m = cfg.Accounts[0].IMAP
	if m.Port != 143 || m.Folder != "POP/work" || !reflect.DeepEqual(m.Flags, []string{`\Seen`, "popfetch"}) ||
		m.OAuth2 == nil || m.OAuth2.Scopes[0] != "https://outlook.office.com/IMAP.AccessAsUser.All" {
		t.Errorf("got %+v, oauth2 %+v", *m, m.OAuth2)
	}
	// The POP side's own table keeps the POP scope.
	if cfg.Accounts[0].OAuth2 != nil {
		t.Error("the IMAP table's oauth2 leaked to the account")
	}
	dump := dumpString(t, cfg)
	for _, s := range []string{"[account.imap]", `folder = "POP/work"`, "[account.imap.oauth2]", "STATE/oauth2/work.imap.json"} {
		if !strings.Contains(dump, s) {
			t.Errorf("config dump lacks %q:\n%s", s, dump)
		}
	}
	cfg, _ = Parse("c.toml", noTarget+"[account.imap]\nserver = 'i'\nuser = 'u'\npassword = 'hunter2'\n")
	if d := dumpString(t, cfg); strings.Contains(d, "hunter2") {
		t.Errorf("the dump shows the IMAP password:\n%s", d)
	}
}

func TestParseIMAPProblems(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"and maildir", minimal + "[account.imap]\nserver = 'i'\nuser = 'u'\n", "set one delivery target, not maildir and imap"},
		{"no server", noTarget + "[account.imap]\nuser = 'u'\n", "imap: server is missing"},
		{"no user", noTarget + "[account.imap]\nserver = 'i'\n", "imap: user is missing"},
		{"plaintext", noTarget + "[account.imap]\nserver = 'i'\nuser = 'u'\ntls = 'none'\n", "imap: tls = \"none\" would send the password unencrypted"},
		{"pop auth", noTarget + "[account.imap]\nserver = 'i'\nuser = 'u'\nauth = 'apop'\n", `imap: auth = "apop"`},
		{"bad flag", noTarget + "[account.imap]\nserver = 'i'\nuser = 'u'\nflags = ['\\Recent']\n", `flags: "\\Recent" is not an IMAP flag`},
		{"empty folder", noTarget + "[account.imap]\nserver = 'i'\nuser = 'u'\nfolder = ''\n", `folder ""`},
		{"two passwords", noTarget + "[account.imap]\nserver = 'i'\nuser = 'u'\npassword = 'a'\npassword_env = 'B'\n", "imap: set only one of password"},
		{"unknown key", noTarget + "[account.imap]\nserver = 'i'\nuser = 'u'\nfoldr = 'x'\n", `unknown key (did you mean "folder"?)`},
	} {
		_, err := Parse("c.toml", tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func dumpString(t *testing.T, c *Config) string {
	t.Helper()
	var b bytes.Buffer
	if err := Dump(&b, c); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
