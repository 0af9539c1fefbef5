package config

import (
	"strings"
	"testing"
)

// TestSharedTokenFile: two OAuth2 tables that would keep their tokens in
// one file are refused: by default account "work.imap"'s POP3 token and
// account "work"'s IMAP token are both STATE/oauth2/work.imap.json, and
// one side would log in with the other's token.
func TestSharedTokenFile(t *testing.T) {
	oauth := "[account.oauth2]\nprovider = \"google\"\nclient_id = \"c\"\n"
	imapOAuth := "[account.imap]\nserver = \"imap.example.com\"\nuser = \"u\"\n[account.imap.oauth2]\nprovider = \"google\"\nclient_id = \"c\"\n"
	for _, tc := range []struct{ name, text string }{
		{"default names", `
[[account]]
name = "work"
server = "pop.example.com"
user = "u"
` + imapOAuth + `
[[account]]
name = "work.imap"
server = "pop.example.com"
user = "v"
maildir = "/tmp/m"
` + oauth},
		{"one file for both sides", `
[[account]]
name = "one"
server = "pop.example.com"
user = "u"
[account.oauth2]
provider = "google"
client_id = "c"
refresh_token_file = "/tmp/tok.json"
[account.imap]
server = "imap.example.com"
user = "u"
[account.imap.oauth2]
provider = "google"
client_id = "c"
refresh_token_file = "/tmp/tok.json"
`},
		{"gmail's default name", `
[[account]]
name = "work"
server = "pop.example.com"
user = "u"
[account.gmail.oauth2]
provider = "google"
client_id = "c"
[[account]]
name = "work.gmail"
server = "pop.example.com"
user = "v"
maildir = "/tmp/m"
` + oauth},
	} {
		_, err := Parse("c.toml", tc.text)
		if err == nil || !strings.Contains(err.Error(), "keeps its token in") {
			t.Errorf("%s: %v, want the shared token file refused", tc.name, err)
		}
	}
	// Each side with a file of its own is fine.
	if _, err := Parse("c.toml", `
[[account]]
name = "work"
server = "pop.example.com"
user = "u"
`+oauth+imapOAuth); err != nil {
		t.Errorf("separate token files refused: %v", err)
	}
}
