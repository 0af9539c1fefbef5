package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/cmd/internal/dovecot"
	"github.com/popfetch/popfetch/fetch/oauth2token/oauth2test"
)

// base64Run is a run of base64 long enough to hide a secret.
var base64Run = regexp.MustCompile(`[A-Za-z0-9+/]{6,}={0,2}`)

// leak returns where out shows secret: as it is, or inside base64 (at
// any alignment: each run of base64 in out is decoded from each of its
// first four offsets), "" if nowhere.
func leak(out, secret string) string {
	if strings.Contains(out, secret) {
		return "as it is"
	}
	for _, run := range base64Run.FindAllString(out, -1) {
		run = strings.TrimRight(run, "=")
		for off := 0; off < 4 && off < len(run); off++ {
			s := run[off:]
			s = s[:len(s)/4*4]
			if b, err := base64.StdEncoding.DecodeString(s); err == nil && strings.Contains(string(b), secret) {
				return "in base64: " + run
			}
			if b, err := base64.RawStdEncoding.DecodeString(run[off:]); err == nil && strings.Contains(string(b), secret) {
				return "in base64: " + run
			}
		}
	}
	return ""
}

// TestDovecotIMAPTrace: popfetch -vv traces the IMAP leg too, its lines
// labelled "ACCOUNT imap: ", against the private Dovecot's IMAP (over
// STARTTLS), with a password (LOGIN, AUTHENTICATE PLAIN) and with an
// OAuth2 token (XOAUTH2, OAUTHBEARER): the trace shows the APPENDs and
// their tagged OKs, and shows neither the password nor the token, nor
// their base64, anywhere.
func TestDovecotIMAPTrace(t *testing.T) {
	prov := oauth2test.NewProvider(oauth2test.Config{ClientID: "popfetch-test", Refresh: "refresh-0", Username: "trace-xoauth2"})
	defer prov.Close()
	dc := startDovecotWith(t, dovecot.Options{IMAP: true, OAuth2Introspection: prov.URL() + "/introspect"})
	for _, tc := range []struct {
		auth  string
		token bool
		login string // the login line the trace shows
	}{
		{"login", false, `imap: C: \S+ LOGIN <redacted>`},
		{"plain", false, `imap: C: \S+ AUTHENTICATE PLAIN (<initial response redacted>)?\n`},
		{"xoauth2", true, `imap: C: \S+ AUTHENTICATE XOAUTH2 <initial response redacted>\n`},
		{"oauthbearer", true, `imap: C: \S+ AUTHENTICATE OAUTHBEARER <initial response redacted>\n`},
	} {
		t.Run(tc.auth, func(t *testing.T) {
			user := "trace-" + tc.auth
			e := newE2E(t, dc, "trace-src-"+tc.auth, "none", "")
			e.toIMAP(user, fmt.Sprintf("auth = %q", tc.auth))
			secret := "pw-" + user
			if tc.token {
				prov.SetUsername(user)
				secret = prov.IssueAccessToken()
				file := filepath.Join(e.dir, "access-token")
				if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				text, _ := os.ReadFile(e.config)
				e.writeConfig(strings.Replace(string(text), fmt.Sprintf("password = %q\n", "pw-"+user),
					fmt.Sprintf("password_command = [\"cat\", %q]\n", file), 1))
			}
			e.fill(3, 2000)
			code, out := e.run("-vv")
			if code != exitMail {
				t.Fatalf("exit %d\n%s\n%s", code, out, dc.LogTail())
			}
			got, dups := byMessageID(t, imapFolder(t, dc, user, "INBOX"))
			e.compare(got)
			if dups != 0 {
				t.Errorf("%d duplicates", dups)
			}
			for _, s := range []string{secret, "pw-" + e.user} {
				if where := leak(out, s); where != "" {
					t.Fatalf("the trace shows the secret %q %s:\n%s", s, where, out)
				}
			}
			name := e.user // the account is named after the POP3 user
			if !regexp.MustCompile(regexp.QuoteMeta(name+" ") + tc.login).MatchString(out) {
				t.Errorf("the trace lacks the login %q:\n%s", tc.login, out)
			}
			appends := regexp.MustCompile(regexp.QuoteMeta(name+" imap: C: ")+`(\S+) APPEND "?INBOX"? .*\{\d+\+?\}\n`).FindAllStringSubmatch(out, -1)
			if len(appends) != len(e.sent) {
				t.Fatalf("%d APPENDs in the trace, want %d:\n%s", len(appends), len(e.sent), out)
			}
			for _, a := range appends {
				if ok := name + " imap: S: " + a[1] + " OK "; !strings.Contains(out, ok) {
					t.Errorf("the trace lacks %q:\n%s", ok, out)
				}
			}
			if n := len(regexp.MustCompile(`imap: C: <\d+ octets of message data>\n`).FindAllString(out, -1)); n != len(e.sent) {
				t.Errorf("%d message data summaries, want %d:\n%s", n, len(e.sent), out)
			}
			if strings.Contains(out, "Subject:") {
				t.Errorf("the trace shows a message's contents:\n%s", out)
			}
			// The POP3 leg's trace is there as before, unlabelled.
			if !strings.Contains(out, name+" C: PASS <redacted>") && !strings.Contains(out, name+" C: AUTH ") {
				t.Errorf("the POP3 trace is missing:\n%s", out)
			}
		})
	}
}
