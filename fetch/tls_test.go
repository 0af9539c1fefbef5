package fetch

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

func TestParseFingerprint(t *testing.T) {
	hexFP := strings.Repeat("ab", 32)
	colons := strings.ToUpper(strings.TrimSuffix(strings.Repeat("AB:", 32), ":"))
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{hexFP, true}, {colons, true}, {" " + hexFP + "\n", true},
		{hexFP[:62], false}, {strings.Repeat("zz", 32), false}, {"", false},
		{strings.Repeat("ab", 20), false}, // SHA-1 length
	} {
		b, err := ParseFingerprint(tc.in)
		if (err == nil) != tc.ok || (tc.ok && len(b) != 32) {
			t.Errorf("ParseFingerprint(%q) = %x, %v", tc.in, b, err)
		}
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTLSOptions polls over POP3S with each TLS option: certificates
// accepted or refused as configured, and each refusal says what was
// expected and what the server presented. No credentials reach a server
// that was refused.
func TestTLSOptions(t *testing.T) {
	good, err := pop3test.NewCert(time.Hour, "127.0.0.1", "pop.example.test")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := pop3test.NewCert(time.Hour, "127.0.0.1")
	expired, _ := pop3test.NewCert(-30*time.Minute, "127.0.0.1")
	wrongName, _ := pop3test.NewCert(time.Hour, "mail.elsewhere.test")
	client, _ := pop3test.NewCert(time.Hour, "client.test")
	goodCA := writeFile(t, "good.pem", good.CertPEM)
	otherCA := writeFile(t, "other.pem", other.CertPEM)
	clientCert, clientKey := writeFile(t, "client.pem", client.CertPEM), writeFile(t, "client.key", client.KeyPEM)

	tls12Only := func(c *pop3test.Cert) *tls.Config {
		cfg := c.ServerConfig()
		cfg.MaxVersion = tls.VersionTLS12
		return cfg
	}
	needClientCert := func(c *pop3test.Cert) *tls.Config {
		cfg := c.ServerConfig()
		cfg.ClientAuth = tls.RequireAnyClientCert
		return cfg
	}
	for _, tc := range []struct {
		name   string
		server *pop3test.Cert
		srvCfg func(*pop3test.Cert) *tls.Config
		opts   TLSOptions
		want   []string // in the error; none: success
	}{
		{"trusted by ca_file", good, nil, TLSOptions{CAFile: goodCA}, nil},
		{"system roots refuse a self-signed certificate", good, nil, TLSOptions{},
			[]string{`expected a certificate for "127.0.0.1" from a CA the system trusts`, "presented one for pop.example.test, 127.0.0.1", "SHA-256 ",
				`trust the CA that issued it with ca_file = "<its PEM file>"`, `pin the certificate with tls_fingerprint = "` + Fingerprint(good.Leaf()) + `"`,
				"Check that SHA-256 out of band first", "an attacker's certificate would be shown here the same way"}},
		{"another CA", good, nil, TLSOptions{CAFile: otherCA}, []string{"from a CA in " + otherCA}},
		{"wrong host name", wrongName, nil, TLSOptions{CAFile: writeFile(t, "w.pem", wrongName.CertPEM)},
			[]string{`expected a certificate for "127.0.0.1"`, "presented one for mail.elsewhere.test",
				"if the provider's own documentation gives one of those names", `pin the certificate with tls_fingerprint = "` + Fingerprint(wrongName.Leaf()) + `"`, "out of band"}},
		{"expired", expired, nil, TLSOptions{CAFile: writeFile(t, "e.pem", expired.CertPEM)},
			[]string{"expired", "valid " + expired.Leaf().NotBefore.UTC().Format(time.DateOnly), `pin it with tls_fingerprint = "` + Fingerprint(expired.Leaf()) + `"`}},
		{"pinned, no CA", good, nil, TLSOptions{Fingerprint: Fingerprint(good.Leaf())}, nil},
		{"pinned, lower case without colons", good, nil,
			TLSOptions{Fingerprint: strings.ToLower(strings.ReplaceAll(Fingerprint(good.Leaf()), ":", ""))}, nil},
		{"pinned expired certificate", expired, nil, TLSOptions{Fingerprint: Fingerprint(expired.Leaf())}, nil},
		{"fingerprint mismatch", good, nil, TLSOptions{Fingerprint: Fingerprint(other.Leaf())},
			[]string{"expected the certificate with SHA-256", "(tls_fingerprint)", "SHA-256 " + Fingerprint(good.Leaf()),
				`was changed (renewed), pin the new one with tls_fingerprint = "` + Fingerprint(good.Leaf()) + `"`, "out of band"}},
		{"tls_server_name", good, nil, TLSOptions{CAFile: goodCA, ServerName: "pop.example.test"}, nil},
		{"tls_server_name not in the certificate", good, nil, TLSOptions{CAFile: goodCA, ServerName: "pop.other.test"},
			[]string{`expected a certificate for "pop.other.test"`}},
		{"tls_min_version 1.3 against a TLS 1.2 server", good, tls12Only, TLSOptions{CAFile: goodCA, MinVersion: tls.VersionTLS13},
			[]string{"protocol version"}},
		{"TLS 1.2 by default", good, tls12Only, TLSOptions{CAFile: goodCA}, nil},
		{"client certificate presented", good, needClientCert, TLSOptions{CAFile: goodCA, ClientCert: clientCert, ClientKey: clientKey}, nil},
		{"client certificate required, none configured", good, needClientCert, TLSOptions{CAFile: goodCA},
			[]string{"certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srvCfg := tc.server.ServerConfig()
			if tc.srvCfg != nil {
				srvCfg = tc.srvCfg(tc.server)
			}
			f := newFixture(t, pop3test.Config{TLS: srvCfg}, testMessages(1))
			f.acct.TLS = TLSImplicit
			f.acct.AllowInsecureAuth = false
			cfg, err := NewTLSConfig(f.acct.Server, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			f.acct.TLSConfig = cfg
			st, err := f.poll()
			if tc.want == nil {
				if err != nil || st.Delivered != 1 {
					t.Fatalf("%+v, %v", st, err)
				}
				return
			}
			if err == nil {
				t.Fatal("the certificate was accepted")
			}
			if k := kindOf(err); k != KindTLS {
				t.Errorf("kind %v: %v", k, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, c := range f.srv.Commands() {
				if strings.HasPrefix(c, "USER") || strings.HasPrefix(c, "PASS") {
					t.Errorf("credentials sent to a refused server: %q", c)
				}
			}
		})
	}
}

func TestNewTLSConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts TLSOptions
		want string
	}{
		{"missing ca_file", TLSOptions{CAFile: "/nonexistent.pem"}, "ca_file"},
		{"ca_file without PEM", TLSOptions{CAFile: writeFile(t, "x.pem", []byte("not pem"))}, "no PEM certificates"},
		{"bad fingerprint", TLSOptions{Fingerprint: "abc"}, "64 hex digits"},
		{"client_cert alone", TLSOptions{ClientCert: "/x.pem"}, "go together"},
		{"unreadable client_cert", TLSOptions{ClientCert: "/x.pem", ClientKey: "/x.key"}, "client_cert"},
	} {
		if _, err := NewTLSConfig("pop.example.test", tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	cfg, err := NewTLSConfig("pop.example.test", TLSOptions{})
	if err != nil || cfg.MinVersion != tls.VersionTLS12 || cfg.ServerName != "pop.example.test" {
		t.Errorf("defaults: %+v, %v", cfg, err)
	}
}

// Accounts of one server with the same options share a configuration
// whose TLS sessions later polls resume; other options get their own.
func TestTLSConfigsShareAndResume(t *testing.T) {
	cert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ca := writeFile(t, "ca.pem", cert.CertPEM)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cert.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("+OK hello\r\n")) // the ticket goes out with it (TLS 1.3)
				c.Read(make([]byte, 1))
			}()
		}
	}()
	var configs TLSConfigs
	cfg, err := configs.Get("127.0.0.1", TLSOptions{CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := configs.Get("127.0.0.1", TLSOptions{CAFile: ca}); again != cfg {
		t.Error("the same server and options got another configuration")
	}
	if other, _ := configs.Get("127.0.0.1", TLSOptions{CAFile: ca, MinVersion: tls.VersionTLS13}); other == cfg {
		t.Error("other options got the same configuration")
	}
	dial := func() bool {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg.Clone())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Read(make([]byte, 64)) // reads the session ticket too
		return c.ConnectionState().DidResume
	}
	if dial() {
		t.Error("the first connection resumed a session")
	}
	if !dial() {
		t.Error("the second connection did not resume the first one's session")
	}
	// A configuration of its own (a one-shot run) keeps no sessions.
	own, _ := NewTLSConfig("127.0.0.1", TLSOptions{CAFile: ca})
	if own.ClientSessionCache != nil {
		t.Error("NewTLSConfig keeps sessions")
	}
}

// TestCertificateErrorEscapesNames: the names of a refused certificate
// are the presenter's to choose, and a DNS name may hold a line feed or
// ESC (x509 takes any IA5String). The error shows them escaped, on one
// line: the final error of a run keeps line feeds, and a name must not
// start a line of its own that looks like popfetch's.
func TestCertificateErrorEscapesNames(t *testing.T) {
	cert, err := pop3test.NewCert(time.Hour, "a\npopfetch: forged line", "b\x1b[31m")
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf()
	verr := leaf.VerifyHostname("pop.example.com")
	for _, ce := range []*CertificateError{
		{Expected: `a certificate for "pop.example.com" from a trusted CA`, Presented: leaf, Err: verr},
		{Expected: "the certificate with SHA-256 00 (tls_fingerprint)", Presented: leaf, Pinned: true},
	} {
		msg := ce.Error()
		if strings.ContainsAny(msg, "\n\x1b") {
			t.Errorf("raw controls in %q", msg)
		}
		if !strings.Contains(msg, `a\x0apopfetch: forged line`) {
			t.Errorf("the name is not shown escaped: %q", msg)
		}
	}
}
