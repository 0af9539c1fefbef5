package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigDumpKeepsProvider: the output of popfetch config check, saved
// as the configuration (what a user does with fetchmail --configdump),
// reads back as the same configuration: the OAuth2 tables keep their
// provider (and with it Google's access_type=offline and prompt=consent,
// without which Google issues no refresh token), and a second dump is
// the first one, line for line.
func TestConfigDumpKeepsProvider(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "config.toml")
	text := `
[[account]]
name = "gm"
server = "pop.example.net"
user = "g"
password = "pop-secret"
[account.gmail]
labels = ["INBOX", "ISP"]
[account.gmail.oauth2]
provider = "google"
client_id = "gid"
client_secret = "gmail-secret"

[[account]]
name = "ms"
server = "outlook.office365.com"
user = "m@example.com"
auth = "xoauth2"
maildir = "Mail/ms"
[account.oauth2]
provider = "microsoft"
tenant = "consumers"
client_id = "mid"

[[account]]
name = "im"
server = "pop.example.net"
user = "i"
password = "pop-secret"
[account.imap]
server = "imap.example.com"
user = "i@example.com"
password = "imap-secret"
[account.imap.oauth2]
provider = "microsoft"
client_id = "iid"
scopes = ["https://outlook.office.com/IMAP.AccessAsUser.All"]
`
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, first, stderr := runBinaryIn(t, dir, "--config", conf, "config", "check")
	if code != exitMail {
		t.Fatalf("config check: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{
		"[account.gmail.oauth2]\nprovider = \"google\"\n",
		"[account.oauth2]\nprovider = \"microsoft\"\ntenant = \"consumers\"\n",
		"[account.imap.oauth2]\nprovider = \"microsoft\"\n",
		"scopes = [\"https://outlook.office.com/IMAP.AccessAsUser.All\"]\n",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("the dump lacks %q:\n%s", want, first)
		}
	}
	for _, secret := range []string{"pop-secret", "gmail-secret", "imap-secret"} {
		if strings.Contains(first, secret) {
			t.Errorf("the dump shows %s", secret)
		}
	}
	// Saved as the configuration: the masked secrets stand for
	// themselves, everything else is as before.
	if err := os.WriteFile(conf, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}
	code, second, stderr := runBinaryIn(t, dir, "--config", conf, "config", "check")
	if code != exitMail {
		t.Fatalf("config check of the dump: exit %d\n%s", code, stderr)
	}
	if second != first {
		t.Errorf("the dump of the dump differs:\n%s\n--- first:\n%s", second, first)
	}
}
