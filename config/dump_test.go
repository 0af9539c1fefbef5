package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestDump(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, []byte("x"), 0o600)
	text := `
[daemon]
max_concurrent_polls = 7

[defaults]
interval = "10m"

[[account]]
name = "work"
server = "pop.example.com"
user = "me@example.com"
password = "hunter2-the-secret"
maildir = "/tmp/Mail/work"
ca_file = "` + ca + `"
delete_after = "30d"
size_limit = "20MiB"

[[account]]
name = "cloud"
server = "outlook.office365.com"
user = "me@example.com"
mda = ["/usr/bin/procmail", "-d", "%T"]
auth = "xoauth2"
[account.oauth2]
provider = "microsoft"
tenant = "contoso"
client_id = "abc"
client_secret = "the-client-secret"

[[account]]
name = "cmd"
server = "pop.example.net"
user = "u\"q"
password_command = ["pass", "show", "mail"]
maildir = "/tmp/Mail/cmd"
tls = "starttls"

[[account]]
name = "lmtp"
server = "pop.example.net"
user = "l"
lmtp = "/run/dovecot/lmtp"
lmtp_recipients = ["a@example.net", "b@example.net"]
delivered_to = true

[[account]]
name = "mbox"
server = "pop.example.net"
user = "m"
mbox = "/var/mail/m"
envelope_to = true
return_path = true

[[account]]
name = "gm"
server = "pop.example.net"
user = "g"
[account.gmail]
labels = ["INBOX", "ISP"]
never_mark_spam = true
[account.gmail.oauth2]
provider = "google"
client_id = "gid"
client_secret = "the-gmail-client-secret"

[[account]]
name = "toimap"
server = "pop.example.net"
user = "i"
password = "pop-side-secret"

[account.imap]
server = "imap.example.com"
user = "i@example.com"
password = "imap-side-secret"
tls_min_version = "1.3"
folder = "POP"
flags = ['\Seen']
[account.imap.oauth2]
provider = "microsoft"
tenant = "consumers"
client_id = "iid"
auth_url = "https://login.example.com/authorize"

[[account]]
name = "own-scopes"
server = "pop.example.net"
user = "o"
password_file = "/run/secrets/pop"
maildir = "/tmp/Mail/o"
auth = "xoauth2"
[account.oauth2]
provider = "google"
client_id = "gid2"
flow = "device"
scopes = ["https://www.googleapis.com/auth/gmail.readonly"]
refresh_token_file = "/var/lib/popfetch/o.json"

[[account]]
name = "env"
server = "pop.example.net"
user = "e"
password_env = "POP_PASSWORD"
maildir = "/tmp/Mail/e"
auth = "oauthbearer"
[account.oauth2]
token_url = "https://sso.example.net/token"
auth_url = "https://sso.example.net/auth"
client_id = "eid"
scopes = ["mail"]
`
	cfg, err := Parse("c.toml", text)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Dump(&out, cfg); err != nil {
		t.Fatal(err)
	}
	dump := out.String()
	for _, secret := range []string{"hunter2-the-secret", "the-client-secret", "the-gmail-client-secret", "pop-side-secret", "imap-side-secret"} {
		if strings.Contains(dump, secret) {
			t.Errorf("the dump shows a secret:\n%s", dump)
		}
	}
	// Every key of an account appears, as a key or as a comment that
	// says what applies instead: the dump cannot drift from the config.
	keyRE := regexp.MustCompile(`(?m)^(?:# )?([a-z0-9_]+)(?: = |: | =)`)
	found := map[string]bool{}
	for _, m := range keyRE.FindAllStringSubmatch(dump, -1) {
		found[m[1]] = true
	}
	for _, typ := range []reflect.Type{reflect.TypeOf(rawAccount{}), reflect.TypeOf(rawOAuth2{}), reflect.TypeOf(rawDaemon{}), reflect.TypeOf(rawIMAP{}), reflect.TypeOf(rawGmail{})} {
		for i := 0; i < typ.NumField(); i++ {
			key := strings.Split(typ.Field(i).Tag.Get("toml"), ",")[0]
			// Keys of which an account has one or none: each is
			// checked by the round trip below, which compares every
			// field (the password's source included).
			alternatives := map[string]bool{"password": true, "password_command": true, "password_file": true, "password_env": true, "maildir": true, "mda": true, "mbox": true, "lmtp": true, "lmtp_recipients": true, "oauth2": true, "imap": true, "gmail": true}
			if !found[key] && !alternatives[key] {
				t.Errorf("key %s missing from the dump", key)
			}
		}
	}
	for _, want := range []string{`provider = "google"`, `provider = "microsoft"`, `tenant = "consumers"`, `password_file = "/run/secrets/pop"`, `password_env = "POP_PASSWORD"`} {
		if !strings.Contains(dump, want+"\n") {
			t.Errorf("the dump lacks %s:\n%s", want, dump)
		}
	}
	// The dump parses back into the same configuration: every field,
	// the OAuth2 provider and its AuthParams included. Only what is
	// masked differs: a password or client secret in the file, and the
	// arguments of a password_command.
	back, err := Parse("dump.toml", dump)
	if err != nil {
		t.Fatalf("the dump does not parse: %v\n%s", err, dump)
	}
	if len(back.Accounts) != len(cfg.Accounts) {
		t.Fatalf("%d accounts after a round trip, want %d", len(back.Accounts), len(cfg.Accounts))
	}
	unmask := func(want Secret, got *Secret) {
		if want.value != "" && got.value == masked {
			got.value = want.value
		}
		if len(want.command) > 0 && len(got.command) == len(want.command) && got.command[0] == want.command[0] {
			got.command = want.command
		}
	}
	unmaskOAuth2 := func(want *OAuth2, got **OAuth2) {
		if want == nil || *got == nil {
			return
		}
		o := **got
		if want.ClientSecret != "" && o.ClientSecret == masked {
			o.ClientSecret = want.ClientSecret
		}
		*got = &o
	}
	for i := range cfg.Accounts {
		want, got := cfg.Accounts[i], back.Accounts[i]
		unmask(want.Password, &got.Password)
		unmaskOAuth2(want.OAuth2, &got.OAuth2)
		if want.IMAP != nil && got.IMAP != nil {
			g := *got.IMAP
			unmask(want.IMAP.Password, &g.Password)
			unmaskOAuth2(want.IMAP.OAuth2, &g.OAuth2)
			got.IMAP = &g
		}
		if want.Gmail != nil && got.Gmail != nil {
			g := *got.Gmail
			unmaskOAuth2(want.Gmail.OAuth2, &g.OAuth2)
			got.Gmail = &g
		}
		if !reflect.DeepEqual(want, got) {
			t.Errorf("account %s after a round trip:\n got %+v\nwant %+v", want.Name, got, want)
		}
		for _, o := range []struct{ want, got *OAuth2 }{{want.OAuth2, got.OAuth2}, {imapOAuth2(want.IMAP), imapOAuth2(got.IMAP)}, {gmailTableOAuth2(want.Gmail), gmailTableOAuth2(got.Gmail)}} {
			if o.want != nil && o.got != nil && !reflect.DeepEqual(*o.want, *o.got) {
				t.Errorf("account %s: OAuth2 after a round trip:\n got %+v\nwant %+v", want.Name, *o.got, *o.want)
			}
		}
	}
	if !reflect.DeepEqual(cfg.Daemon, back.Daemon) {
		t.Errorf("daemon after a round trip: %+v, want %+v", back.Daemon, cfg.Daemon)
	}
	if !strings.Contains(dump, `password_command = ["pass", "********", "********"]`) || !strings.Contains(dump, `user = "u\"q"`) {
		t.Errorf("dump:\n%s", dump)
	}
}

func imapOAuth2(m *IMAP) *OAuth2 {
	if m == nil {
		return nil
	}
	return m.OAuth2
}

func gmailTableOAuth2(g *Gmail) *OAuth2 {
	if g == nil {
		return nil
	}
	return g.OAuth2
}
