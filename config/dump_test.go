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
	for _, typ := range []reflect.Type{reflect.TypeOf(rawAccount{}), reflect.TypeOf(rawOAuth2{}), reflect.TypeOf(rawDaemon{}), reflect.TypeOf(rawIMAP{})} {
		for i := 0; i < typ.NumField(); i++ {
			key := strings.Split(typ.Field(i).Tag.Get("toml"), ",")[0]
			alternatives := map[string]bool{"password": true, "password_command": true, "password_file": true, "password_env": true, "maildir": true, "mda": true, "mbox": true, "lmtp": true, "lmtp_recipients": true, "oauth2": true, "imap": true, "gmail": true}
			if !found[key] && !alternatives[key] {
				t.Errorf("key %s missing from the dump", key)
			}
		}
	}
	// The dump parses back into the same configuration, masked secrets
	// apart.
	back, err := Parse("dump.toml", dump)
	if err != nil {
		t.Fatalf("the dump does not parse: %v\n%s", err, dump)
	}
	for i := range cfg.Accounts {
		want, got := cfg.Accounts[i], back.Accounts[i]
		want.Password, got.Password = Secret{}, Secret{}
		if want.IMAP != nil && got.IMAP != nil {
			w, g := *want.IMAP, *got.IMAP
			w.Password, g.Password = Secret{}, Secret{}
			want.IMAP, got.IMAP = &w, &g
		}
		if want.OAuth2 != nil {
			w, g := *want.OAuth2, *got.OAuth2
			w.ClientSecret, g.ClientSecret = "", ""
			want.OAuth2, got.OAuth2 = &w, &g
		}
		if want.Gmail != nil && want.Gmail.OAuth2 != nil && got.Gmail != nil && got.Gmail.OAuth2 != nil {
			wg, gg := *want.Gmail, *got.Gmail
			wo, go_ := *wg.OAuth2, *gg.OAuth2
			// The provider comes back, and with it Google's
			// AuthParams (access_type, prompt), which have no key.
			wo.ClientSecret, go_.ClientSecret = "", ""
			wg.OAuth2, gg.OAuth2 = &wo, &go_
			want.Gmail, got.Gmail = &wg, &gg
		}
		if !reflect.DeepEqual(want, got) {
			t.Errorf("account %s after a round trip:\n got %+v\nwant %+v", want.Name, got, want)
		}
	}
	if !reflect.DeepEqual(cfg.Daemon, back.Daemon) {
		t.Errorf("daemon after a round trip: %+v, want %+v", back.Daemon, cfg.Daemon)
	}
	if !strings.Contains(dump, `password_command = ["pass", "********", "********"]`) || !strings.Contains(dump, `user = "u\"q"`) {
		t.Errorf("dump:\n%s", dump)
	}
}
