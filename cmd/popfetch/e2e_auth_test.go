package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/cmd/internal/dovecot"
	"github.com/popfetch/popfetch/fetch/oauth2token/oauth2test"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// Every password mechanism Dovecot offers, and APOP, against the real
// server: mail arrives, the trace names the mechanism and holds no secret.
// A wrong password is refused. (Tokens and certificates:
// TestDovecotOAuth2 and TestDovecotExternal.)
func TestDovecotSASL(t *testing.T) {
	dc := startDovecot(t)
	tests := []struct{ auth, mode, want string }{
		{"plain", "implicit", "C: AUTH PLAIN <initial response redacted>"},
		{"login", "implicit", "C: AUTH LOGIN <initial response redacted>"},
		{"cram-md5", "implicit", "C: AUTH CRAM-MD5"},
		{"scram-sha-1", "implicit", "C: AUTH SCRAM-SHA-1 <initial response redacted>"},
		{"scram-sha-256", "starttls", "C: AUTH SCRAM-SHA-256 <initial response redacted>"},
		{"apop", "implicit", "C: APOP sasl-apop <redacted>"},
		{"user", "implicit", "C: PASS <redacted>"},
		{"auto", "implicit", "C: AUTH SCRAM-SHA-256 <initial response redacted>"},
		{"auto", "none", "C: AUTH SCRAM-SHA-256 <initial response redacted>"},
	}
	for _, tt := range tests {
		t.Run(tt.auth+" "+tt.mode, func(t *testing.T) {
			user := "sasl-" + strings.ReplaceAll(tt.auth, "-", "") + "-" + tt.mode
			if tt.auth == "apop" {
				user = "sasl-apop"
			}
			e := newE2E(t, dc, user, tt.mode, fmt.Sprintf("auth = %q", tt.auth))
			e.fill(2, 1000)
			code, out := e.run("-vv")
			if code != exitMail {
				t.Fatalf("exit %d\n%s\n%s", code, out, dc.LogTail())
			}
			if !strings.Contains(out, tt.want) {
				t.Fatalf("the trace lacks %q:\n%s", tt.want, out)
			}
			if strings.Contains(out, "pw-"+user) {
				t.Fatalf("the trace holds the password:\n%s", out)
			}
			if dups := e.checkAll(); dups != 0 {
				t.Fatalf("%d duplicates", dups)
			}
			if tt.auth != "auto" || tt.mode != "none" {
				return
			}
			// The last case: a wrong password is refused (exit 3). Only
			// once: Dovecot delays the logins that follow a failure from
			// the same address, longer with each.
			text, _ := os.ReadFile(e.config)
			e.writeConfig(strings.Replace(string(text), `password = "pw-`+user+`"`, `password = "wrong-`+user+`"`, 1))
			e.fill(1, 100)
			if code, out := e.run(); code != exitAuth || strings.Contains(out, "wrong-"+user) {
				t.Fatalf("wrong password: exit %d\n%s", code, out)
			}
		})
	}
}

// logHas reports whether Dovecot's log holds every one of texts, waiting
// up to five seconds for them: its processes write to the log on their own
// time, the login process only when the client has gone.
func logHas(dc *dovecot.Server, texts ...string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for {
		log, missing := dc.Log(), false
		for _, text := range texts {
			missing = missing || !strings.Contains(log, text)
		}
		if !missing {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// passwordLine matches the password key newE2E writes.
var passwordLine = regexp.MustCompile(`(?m)^password = .*$`)

// OAUTHBEARER and XOAUTH2 against Dovecot's oauth2 passdb, which asks the
// tests' OAuth2 provider (RFC 7662 introspection) whether a token is
// active and whose it is. popfetch gets its access token from an
// [account.oauth2] table, refreshing it itself and keeping the rotated
// refresh token, or from a password_command. A token the server calls
// inactive, or one that belongs to another user, is refused (exit 3); with
// [account.oauth2] the next run gets a fresh token and gets in.
func TestDovecotOAuth2(t *testing.T) {
	tests := []struct {
		auth, source, want string
	}{
		{"auto", "oauth2", "C: AUTH OAUTHBEARER <initial response redacted>"},
		{"xoauth2", "oauth2", "C: AUTH XOAUTH2 <initial response redacted>"},
		{"oauthbearer", "command", "C: AUTH OAUTHBEARER <initial response redacted>"},
		{"xoauth2", "command", "C: AUTH XOAUTH2 <initial response redacted>"},
	}
	for _, tt := range tests {
		t.Run(tt.auth+" "+tt.source, func(t *testing.T) {
			// A provider and a Dovecot for each case, in parallel: each
			// case logs in with a refused token, and Dovecot delays the
			// logins that follow a failure from the same address (by 2 s,
			// doubling up to 15 s, for half a minute).
			t.Parallel()
			user := "oauth-" + tt.auth + "-" + tt.source
			prov := oauth2test.NewProvider(oauth2test.Config{ClientID: "popfetch-test", Refresh: "refresh-0", Rotate: true, Username: user})
			defer prov.Close()
			dc := startDovecotWith(t, dovecot.Options{OAuth2Introspection: prov.URL() + "/introspect"})
			e := newE2E(t, dc, user, "implicit", fmt.Sprintf("auth = %q", tt.auth))
			tokenFile := filepath.Join(e.dir, "token.json")
			var keys string
			switch tt.source {
			case "oauth2":
				if err := os.WriteFile(tokenFile, []byte(`{"refresh_token":"refresh-0"}`), 0o600); err != nil {
					t.Fatal(err)
				}
				keys = fmt.Sprintf("[account.oauth2]\ntoken_url = %q\nclient_id = \"popfetch-test\"\nscopes = [\"pop\"]\nrefresh_token_file = %q",
					prov.URL()+"/token", tokenFile)
			case "command":
				keys = fmt.Sprintf("password_command = [\"cat\", %q]", filepath.Join(e.dir, "access-token"))
				if err := os.WriteFile(filepath.Join(e.dir, "access-token"), []byte(prov.IssueAccessToken()+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			text, _ := os.ReadFile(e.config)
			e.writeConfig(passwordLine.ReplaceAllLiteralString(string(text), "") + keys + "\n")

			e.fill(2, 1000)
			before := len(prov.Introspected())
			code, out := e.run("-vv")
			if code != exitMail {
				t.Fatalf("exit %d\n%s\n%s", code, out, dc.LogTail())
			}
			if !strings.Contains(out, tt.want) {
				t.Fatalf("the trace lacks %q:\n%s", tt.want, out)
			}
			checked := prov.Introspected()[before:]
			if len(checked) == 0 {
				t.Fatalf("Dovecot never asked the provider about the token\n%s", dc.LogTail())
			}
			for _, tok := range checked {
				if strings.Contains(out, tok) {
					t.Fatalf("the trace holds the token %q:\n%s", tok, out)
				}
			}
			if dups := e.checkAll(); dups != 0 {
				t.Fatalf("%d duplicates", dups)
			}
			if tt.source == "oauth2" {
				var saved struct {
					RefreshToken string `json:"refresh_token"`
				}
				data, _ := os.ReadFile(tokenFile)
				if err := json.Unmarshal(data, &saved); err != nil || saved.RefreshToken == "refresh-0" || strings.Contains(out, saved.RefreshToken) {
					t.Fatalf("the rotated refresh token was not kept (or was logged): %s", data)
				}
			}

			// The token expires early, on the server's side. From a
			// password_command it is refused (exit 3): the command
			// prints the same one again. With [account.oauth2] popfetch
			// gets a fresh one and logs in with it in the same session.
			prov.ExpireAccessTokens()
			e.fill(1, 100)
			before = len(prov.Introspected())
			code, out = e.run("-vv")
			if tt.source == "command" {
				// The error challenge is answered (RFC 7628 section
				// 3.2.3), not cancelled: Dovecot counts a failed login.
				if code != exitAuth || !strings.Contains(out, "refused the token (status ") ||
					!logHas(dc, "Provided token is not valid", "(auth failed, 1 attempts") {
					t.Fatalf("expired token: exit %d\n%s\n%s", code, out, dc.LogTail())
				}
				// A token of another user's: refused too.
				prov.SetUsername("someone-else")
				os.WriteFile(filepath.Join(e.dir, "access-token"), []byte(prov.IssueAccessToken()+"\n"), 0o600)
				if code, out := e.run(); code != exitAuth || !logHas(dc, "did not match 'someone-else'") {
					t.Fatalf("another user's token: exit %d\n%s\n%s", code, out, dc.LogTail())
				}
				return
			}
			if code != exitMail {
				t.Fatalf("after a refused token: exit %d\n%s\n%s", code, out, dc.LogTail())
			}
			if n := strings.Count(out, "C: AUTH "); n != 2 || len(prov.Introspected())-before != 2 {
				t.Fatalf("%d AUTH commands, %d tokens introspected; want 2 and 2:\n%s", n, len(prov.Introspected())-before, out)
			}
			if dups := e.checkAll(); dups != 0 {
				t.Fatalf("%d duplicates", dups)
			}
		})
	}
}

// EXTERNAL against Dovecot, which verifies the client certificate and logs
// in as its common name: auto picks EXTERNAL when a client certificate is
// configured, and no password is sent. A certificate Dovecot does not
// trust is refused (exit 3).
func TestDovecotExternal(t *testing.T) {
	var trusted [][]byte
	certs := map[string]*pop3test.Cert{}
	for _, user := range []string{"external-1", "external-2", "external-3"} {
		c, err := pop3test.NewClientCert(time.Hour, user)
		if err != nil {
			t.Fatal(err)
		}
		certs[user] = c
		if user != "external-3" {
			trusted = append(trusted, c.CertPEM)
		}
	}
	dc := startDovecotWith(t, dovecot.Options{ClientCA: bytes.Join(trusted, nil)})
	for _, tt := range []struct {
		name, auth, user string
		code             int
	}{
		{"external", "external", "external-1", exitMail},
		{"auto", "auto", "external-2", exitMail},
		{"untrusted certificate", "external", "external-3", exitAuth},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newE2E(t, dc, tt.user, "implicit", fmt.Sprintf("auth = %q", tt.auth))
			certFile, keyFile := filepath.Join(e.dir, "client.pem"), filepath.Join(e.dir, "client.key")
			os.WriteFile(certFile, certs[tt.user].CertPEM, 0o644)
			os.WriteFile(keyFile, certs[tt.user].KeyPEM, 0o600)
			text, _ := os.ReadFile(e.config)
			e.writeConfig(string(text) + fmt.Sprintf("client_cert = %q\nclient_key = %q\n", certFile, keyFile))
			e.fill(2, 1000)
			code, out := e.run("-vv")
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tt.code, out, dc.LogTail())
			}
			if !strings.Contains(out, "C: AUTH EXTERNAL =") || strings.Contains(out, "PASS") || strings.Contains(out, "pw-"+tt.user) {
				t.Fatalf("the trace does not show EXTERNAL alone:\n%s", out)
			}
			if tt.code != exitMail {
				if !logHas(dc, "username not known", "(auth failed, 1 attempts", "method=EXTERNAL") {
					t.Fatalf("Dovecot's log does not show the refused certificate:\n%s", dc.LogTail())
				}
				return
			}
			if dups := e.checkAll(); dups != 0 {
				t.Fatalf("%d duplicates", dups)
			}
		})
	}
}
