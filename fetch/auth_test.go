package fetch

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

var allMechanisms = []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER", "EXTERNAL"}

// A token longer than fits on a 255-octet AUTH line, as Microsoft 365's are.
var longToken = "eyJ0eXAiOiJKV1Qi" + strings.Repeat("Tm9uY2U", 200)

func TestAuthMechanisms(t *testing.T) {
	cert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	clientCert, _ := pop3test.NewCert(time.Hour, "alice")
	withCert := func(a *Account) {
		c, _ := tls.X509KeyPair(clientCert.CertPEM, clientCert.KeyPEM)
		a.TLSConfig.Certificates = []tls.Certificate{c}
	}
	withToken := func(tok string) func(*Account) {
		return func(a *Account) { a.Token = func(context.Context) (string, error) { return tok, nil } }
	}
	tokenAsPassword := func(a *Account) {
		a.Password = func(context.Context) (string, error) { return "tok-123", nil }
	}
	tests := []struct {
		name      string
		auth      AuthMode
		cfg       pop3test.Config
		plaintext bool
		setup     func(*Account)
		want      string // the mechanism the server saw succeed; "USER" or "APOP" for those
		kind      Kind   // the failure, if want is ""
		errHas    string
	}{
		// Each mechanism by name.
		{name: "plain", auth: AuthPlain, cfg: pop3test.Config{SASL: allMechanisms}, want: "PLAIN"},
		{name: "login", auth: AuthLogin, cfg: pop3test.Config{SASL: allMechanisms}, want: "LOGIN"},
		{name: "cram-md5", auth: AuthCRAMMD5, cfg: pop3test.Config{SASL: allMechanisms}, want: "CRAM-MD5"},
		{name: "scram-sha-1", auth: AuthSCRAMSHA1, cfg: pop3test.Config{SASL: allMechanisms}, want: "SCRAM-SHA-1"},
		{name: "scram-sha-256", auth: AuthSCRAMSHA256, cfg: pop3test.Config{SASL: allMechanisms}, want: "SCRAM-SHA-256"},
		{name: "xoauth2, token from password_command", auth: AuthXOAuth2, cfg: pop3test.Config{SASL: allMechanisms, Token: "tok-123"}, setup: tokenAsPassword, want: "XOAUTH2"},
		{name: "oauthbearer, token from oauth2", auth: AuthOAuthBearer, cfg: pop3test.Config{SASL: allMechanisms, Token: "tok-123"}, setup: withToken("tok-123"), want: "OAUTHBEARER"},
		{name: "xoauth2, long token after the empty challenge", auth: AuthXOAuth2, cfg: pop3test.Config{SASL: allMechanisms, Token: longToken}, setup: withToken(longToken), want: "XOAUTH2"},
		{name: "oauthbearer, long token", auth: AuthOAuthBearer, cfg: pop3test.Config{SASL: allMechanisms, Token: longToken}, setup: withToken(longToken), want: "OAUTHBEARER"},
		{name: "external", auth: AuthExternal, cfg: pop3test.Config{SASL: allMechanisms}, setup: withCert, want: "EXTERNAL"},
		{name: "user", auth: AuthUser, cfg: pop3test.Config{SASL: allMechanisms}, want: "USER"},

		// auto.
		{name: "auto prefers SCRAM-SHA-256", auth: AuthAuto, cfg: pop3test.Config{SASL: allMechanisms}, want: "SCRAM-SHA-256"},
		{name: "auto takes SCRAM-SHA-1 over USER", auth: AuthAuto, cfg: pop3test.Config{SASL: []string{"PLAIN", "SCRAM-SHA-1"}}, want: "SCRAM-SHA-1"},
		{name: "auto: USER over PLAIN (it pipelines)", auth: AuthAuto, cfg: pop3test.Config{SASL: []string{"PLAIN", "LOGIN"}}, want: "USER"},
		{name: "auto: no CRAM-MD5 over TLS", auth: AuthAuto, cfg: pop3test.Config{SASL: []string{"CRAM-MD5"}}, want: "USER"},
		{name: "auto: PLAIN without USER", auth: AuthAuto, cfg: pop3test.Config{SASL: []string{"LOGIN", "PLAIN"}, NoUser: true}, want: "PLAIN"},
		{name: "auto: LOGIN as the last resort", auth: AuthAuto, cfg: pop3test.Config{SASL: []string{"LOGIN"}, NoUser: true}, want: "LOGIN"},
		{name: "auto with a token: OAUTHBEARER", auth: AuthAuto, cfg: pop3test.Config{SASL: allMechanisms, Token: "tok-123"}, setup: withToken("tok-123"), want: "OAUTHBEARER"},
		{name: "auto with a token: XOAUTH2", auth: AuthAuto, cfg: pop3test.Config{SASL: []string{"PLAIN", "XOAUTH2"}, Token: "tok-123"}, setup: withToken("tok-123"), want: "XOAUTH2"},
		{name: "auto with a client certificate: EXTERNAL", auth: AuthAuto, cfg: pop3test.Config{SASL: allMechanisms}, setup: withCert, want: "EXTERNAL"},
		{name: "auto on plaintext: SCRAM", auth: AuthAuto, plaintext: true, cfg: pop3test.Config{SASL: allMechanisms, APOP: true}, want: "SCRAM-SHA-256"},
		{name: "auto on plaintext: CRAM-MD5 over APOP", auth: AuthAuto, plaintext: true, cfg: pop3test.Config{SASL: []string{"PLAIN", "CRAM-MD5"}, APOP: true}, want: "CRAM-MD5"},
		{name: "auto on plaintext: APOP over USER", auth: AuthAuto, plaintext: true, cfg: pop3test.Config{SASL: []string{"PLAIN"}, APOP: true}, want: "APOP"},

		// Refusals.
		{name: "named mechanism not offered", auth: AuthSCRAMSHA256, cfg: pop3test.Config{SASL: []string{"PLAIN", "LOGIN"}}, kind: KindConfig, errHas: `auth = "scram-sha-256", but the server offers SASL PLAIN LOGIN`},
		{name: "named mechanism, no SASL at all", auth: AuthPlain, cfg: pop3test.Config{}, kind: KindConfig, errHas: "offers no SASL mechanisms"},
		{name: "named mechanism, no CAPA", auth: AuthCRAMMD5, cfg: pop3test.Config{NoCapa: true}, kind: KindConfig, errHas: "does not know CAPA"},
		{name: "token, but no OAuth mechanism", auth: AuthAuto, cfg: pop3test.Config{SASL: []string{"PLAIN"}}, setup: withToken("tok-123"), kind: KindConfig, errHas: "neither OAUTHBEARER nor XOAUTH2"},
		{name: "external without a certificate", auth: AuthExternal, cfg: pop3test.Config{SASL: allMechanisms}, kind: KindConfig, errHas: "needs client_cert"},
		{name: "wrong password", auth: AuthPlain, cfg: pop3test.Config{SASL: allMechanisms},
			setup: func(a *Account) { a.Password = func(context.Context) (string, error) { return "wrong-password", nil } }, kind: KindAuth},
		{name: "wrong password, SCRAM", auth: AuthSCRAMSHA256, cfg: pop3test.Config{SASL: allMechanisms},
			setup: func(a *Account) { a.Password = func(context.Context) (string, error) { return "wrong-password", nil } }, kind: KindAuth},
		{name: "refused token", auth: AuthXOAuth2, cfg: pop3test.Config{SASL: allMechanisms, Token: "other"}, setup: withToken("tok-123"), kind: KindAuth, errHas: "status 401"},
		{name: "refused token, oauthbearer", auth: AuthOAuthBearer, cfg: pop3test.Config{SASL: allMechanisms, Token: "other"}, setup: withToken("tok-123"), kind: KindAuth, errHas: "status invalid_token"},
		{name: "SCRAM server without the password", auth: AuthSCRAMSHA256, cfg: pop3test.Config{SASL: allMechanisms, ForgeSCRAM: true}, kind: KindAuth, errHas: "man in the middle"},
		{name: "plaintext without allow_insecure_auth", auth: AuthSCRAMSHA256, plaintext: true, cfg: pop3test.Config{SASL: allMechanisms},
			setup: func(a *Account) { a.AllowInsecureAuth = false }, kind: KindConfig, errHas: "unencrypted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if !tt.plaintext {
				srvTLS := cert.ServerConfig()
				srvTLS.ClientAuth = tls.RequestClientCert
				cfg.TLS = srvTLS
			}
			f := newFixture(t, cfg, testMessages(2))
			f.acct.Auth = tt.auth
			if !tt.plaintext {
				f.acct.TLS = TLSImplicit
				f.acct.AllowInsecureAuth = false
				f.acct.TLSConfig = cert.ClientConfig("127.0.0.1")
			}
			if tt.setup != nil {
				tt.setup(f.acct)
			}
			var trace bytes.Buffer
			st, err := Poll(context.Background(), f.acct, f.store, f.md, &Options{Trace: &trace})
			for _, secret := range []string{"wonderland", "wrong-password", "tok-123", longToken[:40]} {
				for _, form := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret))[:len(secret)*4/3-2]} {
					if strings.Contains(trace.String(), form) || (err != nil && strings.Contains(err.Error(), form)) {
						t.Fatalf("the trace or error holds a secret (%q):\n%s\n%v", form, trace.String(), err)
					}
				}
			}
			if tt.want == "" {
				if kindOf(err) != tt.kind || !strings.Contains(errString(err), tt.errHas) {
					t.Fatalf("err = %v, want kind %v mentioning %q", err, tt.kind, tt.errHas)
				}
				if st.Delivered != 0 {
					t.Fatal("delivered after a failed login")
				}
				if tt.kind == KindConfig {
					for _, c := range f.srv.Commands() {
						if strings.HasPrefix(c, "AUTH") || strings.HasPrefix(c, "PASS") || strings.HasPrefix(c, "APOP") {
							t.Errorf("credentials sent: %q", c)
						}
					}
				}
				return
			}
			if err != nil || st.Delivered != 2 {
				t.Fatalf("%+v, %v\n%s", st, err, trace.String())
			}
			got := strings.Join(f.srv.Mechanisms(), " ")
			if f.srv.Count("PASS") > 0 {
				got += "USER"
			}
			if f.srv.Count("APOP") > 0 {
				got += "APOP"
			}
			if got != tt.want {
				t.Fatalf("logged in with %q, want %q\n%s", got, tt.want, trace.String())
			}
			if !strings.EqualFold(string(st.Auth), tt.want) {
				t.Errorf("Stats.Auth = %q, want %q", st.Auth, tt.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// UTF8 goes out only when CAPA lists it (RFC 6856), before login.
func TestAuthUTF8(t *testing.T) {
	for _, advertised := range []bool{true, false} {
		f := newFixture(t, pop3test.Config{UTF8: advertised}, testMessages(1))
		if _, err := f.poll(); err != nil {
			t.Fatal(err)
		}
		want := 0
		if advertised {
			want = 1
		}
		if got := f.srv.Count("UTF8"); got != want {
			t.Fatalf("advertised %v: sent UTF8 %d times", advertised, got)
		}
		if advertised {
			cmds := f.srv.Commands()
			utf8, login := -1, -1
			for i, c := range cmds {
				if c == "UTF8" && utf8 < 0 {
					utf8 = i
				}
				if (strings.HasPrefix(c, "USER") || strings.HasPrefix(c, "APOP")) && login < 0 {
					login = i
				}
			}
			if utf8 < 0 || login < 0 || utf8 > login {
				t.Fatalf("UTF8 not sent before login: %q", cmds)
			}
		}
	}
}

// A refused token is reported through TokenRefused, and a fresh one is
// tried once on the same connection; an accepted one is not reported, and
// a token that comes back unchanged is not retried. The server's error
// challenge is answered as each mechanism requires, so that the server
// ends the exchange with -ERR: XOAUTH2 with an empty response, OAUTHBEARER
// with %x01 (RFC 7628 section 3.2.3), never with "*".
func TestAuthTokenRefused(t *testing.T) {
	dummy := map[string]string{"XOAUTH2": "", "OAUTHBEARER": "AQ=="}
	for _, tc := range []struct {
		name    string
		tokens  []string // what Token returns, call by call (the last one repeats)
		ok      bool
		refused int
		auths   int
	}{
		{"accepted", []string{"good"}, true, 0, 1},
		{"refused, unchanged", []string{"stale"}, false, 1, 1},
		{"refused, then a fresh one", []string{"stale", "good"}, true, 1, 2},
		{"refused twice", []string{"stale", "also-stale"}, false, 2, 2},
		{"refused, and the refresh fails", []string{"stale", "ERR"}, false, 1, 1},
		{"mailbox locked: not about the token", []string{"good", "other"}, false, 0, 1},
	} {
		for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
			t.Run(tc.name+" "+mech, func(t *testing.T) {
				f := newFixture(t, pop3test.Config{SASL: []string{mech}, Token: "good", APOP: true}, testMessages(1))
				calls, refused := 0, 0
				f.acct.Token = func(context.Context) (string, error) {
					tok := tc.tokens[min(calls, len(tc.tokens)-1)]
					calls++
					if tok == "ERR" {
						return "", errors.New(`oauth2: invalid_grant; run "popfetch auth"`)
					}
					return tok, nil
				}
				f.acct.TokenRefused = func() { refused++ }
				wantKind := KindAuth
				if strings.HasPrefix(tc.name, "mailbox locked") {
					f.srv.SetFaults(pop3test.Fault{Command: "AUTH", Action: pop3test.Reply, Reply: "-ERR [IN-USE] mailbox locked"})
					wantKind = KindLocked
				}
				st, err := f.poll()
				if tc.ok && (err != nil || st.Delivered != 1) || !tc.ok && kindOf(err) != wantKind {
					t.Fatalf("err %v, %+v", err, st)
				}
				if tc.tokens[len(tc.tokens)-1] == "ERR" && !strings.Contains(err.Error(), "popfetch auth") {
					t.Fatalf("the refresh failure is not reported: %v", err)
				}
				if !tc.ok && wantKind == KindAuth && tc.tokens[len(tc.tokens)-1] != "ERR" && !strings.Contains(err.Error(), "refused the token (status ") {
					t.Fatalf("the error challenge is not reported: %v", err)
				}
				if refused != tc.refused || f.srv.Count("AUTH") != tc.auths {
					t.Fatalf("TokenRefused called %d times, %d AUTH commands; want %d, %d", refused, f.srv.Count("AUTH"), tc.refused, tc.auths)
				}
				answers := map[string]int{}
				for _, c := range f.srv.Commands() {
					answers[c]++
				}
				if answers[dummy[mech]] != tc.refused || answers["*"] != 0 {
					t.Fatalf("the error challenge was answered %d times with %q, %d times with \"*\"; want %d and 0:\n%q",
						answers[dummy[mech]], dummy[mech], answers["*"], tc.refused, f.srv.Commands())
				}
			})
		}
	}
}

// A password source that fails is a configuration error, and nothing of
// the login is sent.
func TestAuthSecretFailure(t *testing.T) {
	f := newFixture(t, pop3test.Config{}, testMessages(1))
	f.acct.Password = func(context.Context) (string, error) { return "", errors.New("password_command pass: exit status 1") }
	_, err := f.poll()
	if kindOf(err) != KindConfig {
		t.Fatalf("err = %v", err)
	}
	if f.srv.Count("USER")+f.srv.Count("PASS") > 0 {
		t.Fatal("login sent without a password")
	}
}
