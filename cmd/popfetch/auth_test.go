package main

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/oauth2token/oauth2test"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// tlsCLIFixture is a cliFixture whose server speaks POP3S with every SASL
// mechanism, APOP and a bearer token; accountKeys replace the password and
// TLS lines of the config.
func tlsCLIFixture(t *testing.T, token string, accountKeys string) *cliFixture {
	t.Helper()
	cert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srvTLS := cert.ServerConfig()
	srvTLS.ClientAuth = tls.RequestClientCert
	f := newCLIFixture(t, pop3test.Config{TLS: srvTLS, APOP: true, Token: token,
		SASL: []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER", "EXTERNAL"}}, 2, "")
	ca := filepath.Join(f.dir, "ca.pem")
	os.WriteFile(ca, cert.CertPEM, 0o644)
	client, _ := pop3test.NewCert(time.Hour, "alice")
	os.WriteFile(filepath.Join(f.dir, "client.pem"), client.CertPEM, 0o600)
	os.WriteFile(filepath.Join(f.dir, "client.key"), client.KeyPEM, 0o600)
	host, port, _ := strings.Cut(f.srv.Addr(), ":")
	f.writeConfig(fmt.Sprintf(`
[[account]]
name = "test"
server = %q
port = %s
tls = "implicit"
ca_file = %q
user = "alice"
maildir = %q
timeout = "5s"
%s`, host, port, ca, f.maildir, accountKeys), 0o600)
	return f
}

// The -vv trace of every way of logging in holds no secret, in the clear
// or in base64.
func TestTraceHasNoSecret(t *testing.T) {
	const token = "ya29.token-secret-value"
	prov := oauth2test.NewProvider(oauth2test.Config{ClientID: "popfetch-test", Refresh: "refresh-token-secret", Rotate: true})
	defer prov.Close()
	secrets := []string{"wonderland", token, "stale-access-secret", oauth2test.AccessToken(1), "refresh-token-secret",
		oauth2test.RefreshToken(1), "client-secret-value"}
	for _, s := range append([]string(nil), secrets...) {
		// Base64 of the secret, at each of the three alignments it can
		// take inside a longer base64 string.
		for pad := 0; pad < 3; pad++ {
			enc := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("\x00", pad) + s))
			secrets = append(secrets, enc[4:len(enc)-4])
		}
	}
	// The [account.oauth2] case: the access token in the file is refused,
	// popfetch refreshes it (sending the client secret and the refresh
	// token to the provider) and logs in again with the new one.
	oauth2Keys := fmt.Sprintf(`[account.oauth2]
token_url = %q
client_id = "popfetch-test"
client_secret = "client-secret-value"
refresh_token_file = "TOKENFILE"`, prov.URL()+"/token")
	tests := []struct{ auth, keys, srvToken, want string }{
		{"user", `password = "wonderland"`, token, "C: PASS <redacted>"},
		{"apop", `password = "wonderland"`, token, "C: APOP alice <redacted>"},
		{"plain", `password = "wonderland"`, token, "C: AUTH PLAIN <initial response redacted>"},
		{"login", `password = "wonderland"`, token, "C: <SASL response redacted>"},
		{"cram-md5", `password = "wonderland"`, token, "C: AUTH CRAM-MD5"},
		{"scram-sha-1", `password = "wonderland"`, token, "C: AUTH SCRAM-SHA-1 <initial response redacted>"},
		{"scram-sha-256", `password = "wonderland"`, token, "C: AUTH SCRAM-SHA-256 <initial response redacted>"},
		{"xoauth2", `password_command = ["echo", "` + token + `"]`, token, "C: AUTH XOAUTH2 <initial response redacted>"},
		{"oauthbearer", `password_env = "POPFETCH_TEST_TOKEN"`, token, "C: AUTH OAUTHBEARER <initial response redacted>"},
		{"external", `client_cert = "CERT"` + "\n" + `client_key = "KEY"`, token, "C: AUTH EXTERNAL ="},
		{"auto", oauth2Keys, oauth2test.AccessToken(1), "C: AUTH OAUTHBEARER <initial response redacted>"},
	}
	t.Setenv("POPFETCH_TEST_TOKEN", token)
	for _, tt := range tests {
		t.Run(tt.auth, func(t *testing.T) {
			f := tlsCLIFixture(t, tt.srvToken, "")
			tokenFile := filepath.Join(f.dir, "token.json")
			os.WriteFile(tokenFile, []byte(`{"access_token":"stale-access-secret","expiry":"2099-01-01T00:00:00Z","refresh_token":"refresh-token-secret"}`), 0o600)
			keys := strings.NewReplacer("CERT", filepath.Join(f.dir, "client.pem"), "KEY", filepath.Join(f.dir, "client.key"),
				"TOKENFILE", tokenFile).Replace(tt.keys)
			text, _ := os.ReadFile(f.config)
			f.writeConfig(string(text)+"auth = \""+tt.auth+"\"\n"+keys+"\n", 0o600)
			code, stdout, stderr := f.run("-vv", "fetch")
			if code != exitMail || f.countMaildir() != 2 {
				t.Fatalf("exit %d, %d delivered\n%s%s", code, f.countMaildir(), stdout, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Fatalf("the trace lacks %q:\n%s", tt.want, stderr)
			}
			if tt.keys == oauth2Keys && (strings.Count(stderr, tt.want) != 2 || !strings.Contains(stderr, "S: -ERR [AUTH]")) {
				t.Fatalf("the refused token was not replaced in the same session:\n%s", stderr)
			}
			for _, s := range secrets {
				if strings.Contains(stderr, s) || strings.Contains(stdout, s) {
					t.Fatalf("the output holds a secret (%q):\n%s", s, stderr)
				}
			}
		})
	}
}

// popfetch auth gets a refresh token by the device flow; fetch then logs
// in with an access token it refreshes itself; a revoked refresh token is
// an authentication failure that says what to do.
func TestOAuth2DeviceFlowAndRefresh(t *testing.T) {
	prov := oauth2test.NewProvider(oauth2test.Config{ClientID: "popfetch-test", Pending: 1})
	defer prov.Close()
	f := tlsCLIFixture(t, oauth2test.AccessToken(1), fmt.Sprintf(`
[account.oauth2]
token_url = %q
device_auth_url = %q
client_id = "popfetch-test"
scopes = ["pop"]
`, prov.URL()+"/token", prov.URL()+"/device"))

	// Before "popfetch auth": no token.
	code, _, stderr := f.run("fetch")
	if code != exitAuth || !strings.Contains(stderr, `run "popfetch auth test"`) {
		t.Fatalf("before auth: exit %d\n%s", code, stderr)
	}
	code, stdout, stderr := f.run("auth", "test")
	if code != exitMail || !strings.Contains(stdout, "https://example.test/device") || !strings.Contains(stdout, "ABCD-EFGH") {
		t.Fatalf("auth: exit %d\n%s%s", code, stdout, stderr)
	}
	file := filepath.Join(f.stateDir, "oauth2", "test.json")
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	code, _, stderr = f.run("-v", "fetch")
	if code != exitMail || f.countMaildir() != 2 {
		t.Fatalf("fetch: exit %d\n%s", code, stderr)
	}
	if m := f.srv.Mechanisms(); len(m) != 1 || m[0] != "OAUTHBEARER" {
		t.Fatalf("mechanisms %v", m)
	}
	// The access token in the file is still valid: no refresh.
	if g := prov.Grants(); strings.Contains(g, "refresh_token") {
		t.Fatalf("grants %q", g)
	}
	// Expire it: the next run refreshes; with the refresh token revoked,
	// that is an authentication failure (exit 3) with the remedy.
	os.WriteFile(file, []byte(`{"access_token":"old","expiry":"2000-01-01T00:00:00Z","refresh_token":"`+
		oauth2test.RefreshToken(1)+`"}`), 0o600)
	prov.Revoke()
	code, _, stderr = f.run("fetch")
	if code != exitAuth || !strings.Contains(stderr, "invalid_grant") || !strings.Contains(stderr, `run "popfetch auth test"`) {
		t.Fatalf("revoked: exit %d\n%s", code, stderr)
	}
	if strings.Contains(stderr, oauth2test.RefreshToken(1)) {
		t.Fatalf("the error holds the refresh token:\n%s", stderr)
	}
	// The provider unreachable: a network failure (exit 2), temporary.
	prov.SetStatus(503)
	if code, _, stderr = f.run("fetch"); code != exitSocket {
		t.Fatalf("provider down: exit %d\n%s", code, stderr)
	}
	// auth on an account without [account.oauth2] is a usage error.
	g := newCLIFixture(t, pop3test.Config{}, 0, "")
	if code, _, stderr := g.run("auth", "test"); code != exitConfig || !strings.Contains(stderr, "no [account.oauth2] table") {
		t.Fatalf("auth without oauth2: exit %d\n%s", code, stderr)
	}
}
