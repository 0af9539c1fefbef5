package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// siFixture is a pop3test server and a configuration for it, for the
// built binary.
type siFixture struct {
	t      *testing.T
	srv    *pop3test.Server
	dir    string
	config string
	mu     sync.Mutex
	cmds   []string // the commands the server received
}

func newSIFixture(t *testing.T, cfg pop3test.Config, accountKeys string) *siFixture {
	t.Helper()
	f := &siFixture{t: t, dir: t.TempDir()}
	cfg.User, cfg.Password = "alice", "wonderland"
	cfg.Hook = func(line string) {
		f.mu.Lock()
		f.cmds = append(f.cmds, line)
		f.mu.Unlock()
	}
	srv, err := pop3test.NewServer(cfg,
		pop3test.Message{UID: "u1", Data: []byte("Subject: one\n\nbody 1\n")},
		pop3test.Message{UID: "u2", Data: []byte("Subject: two\n\nbody 2\n")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	f.srv = srv
	f.config = filepath.Join(f.dir, "config.toml")
	f.write(accountKeys)
	return f
}

// write writes the configuration: one account "si" with accountKeys.
func (f *siFixture) write(accountKeys string) {
	host, port, _ := strings.Cut(f.srv.Addr(), ":")
	text := "[[account]]\nname = \"si\"\nserver = \"" + host + "\"\nport = " + port +
		"\nuser = \"alice\"\npassword = \"wonderland\"\nmaildir = \"Mail\"\ntimeout = \"5s\"\n" + accountKeys
	if err := os.WriteFile(f.config, []byte(text), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

func (f *siFixture) run(args ...string) (int, string, string) {
	f.t.Helper()
	return runBinaryIn(f.t, f.dir, append([]string{"--config", f.config, "--state-dir", filepath.Join(f.dir, "state")}, args...)...)
}

// sent returns the verbs the server received, and forgets them.
func (f *siFixture) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var verbs []string
	for _, c := range f.cmds {
		v, _, _ := strings.Cut(c, " ")
		verbs = append(verbs, strings.ToUpper(v))
	}
	f.cmds = nil
	return verbs
}

func (f *siFixture) writeFile(name string, data []byte) string {
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// TestServerinfoSelfSigned: the first-time user's case. A self-signed
// POP3S server fails verification, yet serverinfo shows its certificate,
// why it failed, and the tls_fingerprint line; nothing but CAPA and QUIT
// reaches the server. Pasted into the configuration, the line makes the
// certificate verified, and a poll works.
func TestServerinfoSelfSigned(t *testing.T) {
	cert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	f := newSIFixture(t, pop3test.Config{TLS: cert.ServerConfig(), Pipelining: true}, "tls = \"implicit\"\n")
	code, stdout, stderr := f.run("serverinfo", "si", "--login")
	if code != exitSocket {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exitSocket, stdout, stderr)
	}
	fp := fetch.Fingerprint(cert.Leaf())
	for _, want := range []string{
		"Certificate: NOT VERIFIED: x509: certificate signed by unknown authority",
		"SHA-256  " + fp,
		"tls_fingerprint = \"" + fp + "\"",
		"another way than this connection",
		"TLS: TLS 1.3, TLS_",
		"PIPELINING: commands can be sent ahead",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "Messages: 2") {
		t.Errorf("logged in to an unverified server:\n%s", stdout)
	}
	if verbs := strings.Join(f.sent(), " "); verbs != "CAPA QUIT" {
		t.Errorf("the unverified server got %q, want only CAPA QUIT", verbs)
	}

	// Paste the line, as the output says.
	line := regexp.MustCompile(`(?m)^  (tls_fingerprint = "[0-9A-F:]+")$`).FindStringSubmatch(stdout)
	if line == nil {
		t.Fatalf("no line to paste:\n%s", stdout)
	}
	f.write("tls = \"implicit\"\n" + line[1] + "\n")
	code, stdout, stderr = f.run("serverinfo", "si")
	if code != 0 || !strings.Contains(stdout, "Certificate: verified: it has the SHA-256 fingerprint tls_fingerprint pins") {
		t.Fatalf("with the pasted line: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, _, stderr := f.run("fetch"); code != exitMail {
		t.Fatalf("a poll with the pasted line: exit %d\n%s", code, stderr)
	}
}

// TestServerinfoSTARTTLSLoginJSON: CAPA before and after STLS, a login
// for the per-user EXPIRE and the message count, EXPIRE and LOGIN-DELAY
// explained; --json decodes to the documented fields; -vv never shows the
// password.
func TestServerinfoSTARTTLSLoginJSON(t *testing.T) {
	cert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	f := newSIFixture(t, pop3test.Config{STLS: cert.ServerConfig(), LoginDelay: 900, SASL: []string{"PLAIN", "SCRAM-SHA-256"},
		Quirks: pop3test.Quirks{Expire: "0 USER", ExpireAfterLogin: "0"}}, "")
	ca := f.writeFile("ca.pem", cert.CertPEM)
	f.write("tls = \"starttls\"\nca_file = \"ca.pem\"\ninterval = \"5m\"\n")

	code, stdout, stderr := f.run("serverinfo", "si")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"Capabilities before TLS",
		"  STLS\n",
		"Certificate: verified for \"127.0.0.1\", from a CA in " + ca,
		"login:      USER/PASS, PLAIN, SCRAM-SHA-256",
		"EXPIRE:     0 USER: it varies per user; this user's value is in the capabilities after login (--login). For 0:",
		"EXPIRE:     0: the server deletes every message once it has been retrieved: keep = true cannot leave mail there",
		"LOGIN-DELAY: 900: the server refuses a login sooner than 15m0s after the last",
		"the account's interval (5m0s) is shorter",
		"Messages: not known without logging in (popfetch serverinfo --login si)",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if verbs := strings.Join(f.sent(), " "); verbs != "CAPA STLS CAPA QUIT" {
		t.Errorf("without --login the server got %q", verbs)
	}

	code, stdout, stderr = f.run("-vv", "serverinfo", "--login", "si")
	if code != 0 || !strings.Contains(stdout, "Messages: 2 (") || !strings.Contains(stdout, "Capabilities after login") ||
		!strings.Contains(stdout, "EXPIRE:     0: the server deletes every message once it has been retrieved: keep = true") {
		t.Fatalf("--login: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, "wonderland") {
		t.Errorf("the password was shown:\n%s\n%s", stdout, stderr)
	}
	if !strings.Contains(stderr, "C: CAPA") {
		t.Errorf("-vv shows no trace:\n%s", stderr)
	}

	code, stdout, stderr = f.run("serverinfo", "--login", "--json", "si")
	if code != 0 {
		t.Fatalf("--json: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var got struct {
		Server        string `json:"server"`
		TLSMode       string `json:"tls_mode"`
		Greeting      string `json:"greeting"`
		CapaBeforeTLS []struct {
			Name string   `json:"name"`
			Args []string `json:"args"`
		} `json:"capa_before_tls"`
		Capa []struct {
			Name string   `json:"name"`
			Args []string `json:"args"`
		} `json:"capa"`
		CapaAfterLogin []struct {
			Name string   `json:"name"`
			Args []string `json:"args"`
		} `json:"capa_after_login"`
		TLS struct {
			Version  string `json:"version"`
			Verified bool   `json:"verified"`
			Chain    []struct {
				Subject  string    `json:"subject"`
				SHA256   string    `json:"sha256"`
				NotAfter time.Time `json:"not_after"`
			} `json:"chain"`
		} `json:"tls"`
		LoggedIn bool   `json:"logged_in"`
		Messages int    `json:"messages"`
		Error    string `json:"error"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	names := func(cs []struct {
		Name string   `json:"name"`
		Args []string `json:"args"`
	}) string {
		var n []string
		for _, c := range cs {
			n = append(n, strings.TrimSpace(c.Name+" "+strings.Join(c.Args, " ")))
		}
		return strings.Join(n, ",")
	}
	if got.TLSMode != "starttls" || !got.TLS.Verified || got.TLS.Version == "" || len(got.TLS.Chain) != 1 ||
		got.TLS.Chain[0].SHA256 != fetch.Fingerprint(cert.Leaf()) || !got.LoggedIn || got.Messages != 2 || got.Error != "" ||
		!strings.Contains(names(got.CapaBeforeTLS), "STLS") || strings.Contains(names(got.Capa), "STLS") ||
		!strings.Contains(names(got.Capa), "EXPIRE 0 USER") || !strings.Contains(names(got.CapaAfterLogin), "EXPIRE 0") {
		t.Errorf("JSON: %+v\n%s", got, stdout)
	}
}

// TestServerinfoHostile: what a hostile server sends (its greeting, a
// CAPA line, its certificate's subject) reaches the terminal escaped, in
// the text and in the JSON, and the JSON still carries the exact text.
func TestServerinfoHostile(t *testing.T) {
	cert, err := pop3test.NewClientCert(time.Hour, "evil "+hostile)
	if err != nil {
		t.Fatal(err)
	}
	f := newSIFixture(t, pop3test.Config{TLS: cert.ServerConfig(), Greeting: "+OK " + hostile}, "tls = \"implicit\"\n")
	f.srv.SetFaults(pop3test.Fault{Command: "CAPA", Action: pop3test.Reply,
		Reply: "+OK\r\nIMPLEMENTATION " + hostile + "\r\nSASL PLAIN\x1b]0;title\x07\r\nEXPIRE \x1b[31m\r\n."})
	for _, args := range [][]string{{"serverinfo", "si"}, {"serverinfo", "--json", "si"}, {"-vv", "serverinfo", "si"}} {
		code, stdout, stderr := f.run(args...)
		if code != exitSocket {
			t.Errorf("%q: exit %d, want %d (unverified)\n%s\n%s", args, code, exitSocket, stdout, stderr)
		}
		if found := controlsIn(stdout + stderr); len(found) > 0 {
			t.Errorf("%q: raw %s reached the terminal:\n%s\n%s", args, strings.Join(found, " "), stdout, stderr)
		}
		if !strings.Contains(stdout, "evil") || !strings.Contains(stdout, "overwritten") {
			t.Errorf("%q: the hostile text is not shown at all:\n%s", args, stdout)
		}
		if args[1] == "--json" {
			var got struct {
				Greeting string `json:"greeting"`
				TLS      struct {
					Chain []struct {
						Subject string `json:"subject"`
					} `json:"chain"`
				} `json:"tls"`
			}
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, stdout)
			}
			if got.Greeting != hostile || len(got.TLS.Chain) != 1 || !strings.Contains(got.TLS.Chain[0].Subject, "\x1b[2J") {
				t.Errorf("the JSON does not carry the exact text: %q %+v", got.Greeting, got.TLS.Chain)
			}
		}
	}
}

// TestServerinfoMistakes: a first-time user's likely mistakes get a
// clear error.
func TestServerinfoMistakes(t *testing.T) {
	f := newSIFixture(t, pop3test.Config{}, "tls = \"starttls\"\n")
	code, stdout, stderr := f.run("serverinfo", "si")
	if code != exitProtocol || !strings.Contains(stdout, "Capabilities before TLS") || !strings.Contains(stderr, "STLS") {
		t.Errorf("STLS not offered: exit %d, want %d\n%s\n%s", code, exitProtocol, stdout, stderr)
	}
	// One account: its name may be left out, as with list.
	if code, stdout, _ := f.run("serverinfo"); code != exitProtocol || !strings.Contains(stdout, "Capabilities before TLS") {
		t.Errorf("the only account, unnamed: exit %d\n%s", code, stdout)
	}
	if code, _, stderr := f.run("serverinfo", "nosuch"); code != exitConfig || !strings.Contains(stderr, `no account named "nosuch"`) {
		t.Errorf("unknown account: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := f.run("serverinfo", "si", "si"); code != exitConfig || !strings.Contains(stderr, "usage: popfetch serverinfo") {
		t.Errorf("two names: exit %d\n%s", code, stderr)
	}
	f.write("tls = \"starttls\"\n[[account]]\nname = \"other\"\nserver = \"127.0.0.1\"\nuser = \"x\"\nmaildir = \"Mail\"\n")
	if code, _, stderr := f.run("serverinfo"); code != exitConfig || !strings.Contains(stderr, `serverinfo needs an account's name; the accounts are "si" and "other"`) {
		t.Errorf("two accounts, no name: exit %d\n%s", code, stderr)
	}
	f.srv.Close()
	if code, _, stderr := f.run("serverinfo", "si"); code != exitSocket || !strings.Contains(stderr, "connect") {
		t.Errorf("server down: exit %d, want %d\n%s", code, exitSocket, stderr)
	}
}

// TestDovecotServerinfo: serverinfo against a real server, over implicit
// TLS and STARTTLS, with and without a login.
func TestDovecotServerinfo(t *testing.T) {
	dc := startDovecot(t)
	for _, mode := range []string{"implicit", "starttls"} {
		t.Run(mode, func(t *testing.T) {
			e := newE2E(t, dc, "si-"+mode, mode, "")
			e.fill(3, 1000)
			code, out := e.run("serverinfo", "si-"+mode)
			if code != 0 || !strings.Contains(out, "Certificate: verified for \"127.0.0.1\"") || !strings.Contains(out, "Dovecot") ||
				!strings.Contains(out, "PIPELINING: commands can be sent ahead") {
				t.Fatalf("exit %d\n%s", code, out)
			}
			if mode == "starttls" && !strings.Contains(out, "Capabilities before TLS") {
				t.Errorf("no CAPA before TLS:\n%s", out)
			}
			want := fmt.Sprintf("Messages: %d (", len(e.sent))
			if code, out := e.run("serverinfo", "--login", "si-"+mode); code != 0 || !strings.Contains(out, want) {
				t.Fatalf("--login: exit %d, want %q\n%s", code, want, out)
			}
			if n := dc.Count(e.user); n != len(e.sent) {
				t.Errorf("serverinfo --login changed the mailbox: %d messages, want %d", n, len(e.sent))
			}
		})
	}
}

// TestServerinfoExpiryPlural: a certificate near its end says how soon in
// words that fit the number: "within a day", "1 day", "2 days", never
// "0 days" or "1 days".
func TestServerinfoExpiryPlural(t *testing.T) {
	for _, tc := range []struct {
		life time.Duration
		want string
	}{
		{time.Hour, "(expires within a day)"},
		{36 * time.Hour, "(expires in 1 day)"},
		{60 * time.Hour, "(expires in 2 days)"},
	} {
		cert, err := pop3test.NewCert(tc.life, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		f := newSIFixture(t, pop3test.Config{TLS: cert.ServerConfig()}, "tls = \"implicit\"\n")
		_, stdout, stderr := f.run("serverinfo", "si")
		if !strings.Contains(stdout, tc.want) {
			t.Errorf("a certificate valid for %v: output lacks %q:\n%s\n%s", tc.life, tc.want, stdout, stderr)
		}
	}
}
