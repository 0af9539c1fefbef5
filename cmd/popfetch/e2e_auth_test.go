package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Every SASL mechanism Dovecot offers, and APOP, against the real server:
// mail arrives, the trace names the mechanism and holds no secret. A wrong
// password is refused. (OAUTHBEARER and XOAUTH2 are tested
// against pop3test: Dovecot needs an oauth2 passdb for them.)
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
			got, dups := e.received()
			if dups != 0 || len(got) != len(e.sent) {
				t.Fatalf("received %d of %d, %d duplicates", len(got), len(e.sent), dups)
			}
			e.compare(got)
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
