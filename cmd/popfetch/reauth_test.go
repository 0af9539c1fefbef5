package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/oauth2token"
	"github.com/popfetch/popfetch/fetch/oauth2token/oauth2test"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
	"github.com/popfetch/popfetch/fetch/schedule"
)

// TestDaemonStopsAccountWhoseTokenIsRefused: two accounts; the provider
// refuses the first one's refresh token (invalid_grant). That account
// stops polling, saying what to run, and popfetch status shows it; the
// other goes on; a wake does not poll it and counts it as exit 3. After
// popfetch auth it polls again by itself.
func TestDaemonStopsAccountWhoseTokenIsRefused(t *testing.T) {
	prov := oauth2test.NewProvider(oauth2test.Config{ClientID: "popfetch-test", Refresh: "the-good-one"})
	defer prov.Close()
	f := tlsCLIFixture(t, oauth2test.AccessToken(1), fmt.Sprintf(`
[account.oauth2]
provider = "google"
token_url = %q
device_auth_url = %q
flow = "device"
client_id = "popfetch-test"
scopes = ["pop"]
`, prov.URL()+"/token", prov.URL()+"/device"))
	g := newCLIFixture(t, pop3test.Config{}, 1, "")
	text, _ := os.ReadFile(f.config)
	f.writeConfig(string(text)+pop3testAccount("other", g.srv.Addr(), g.maildir, `timeout = "5s"`+"\n"), 0o600)
	file := filepath.Join(f.stateDir, "oauth2", "test.json")
	os.MkdirAll(filepath.Dir(file), 0o700)
	os.WriteFile(file, []byte(`{"refresh_token":"revoked-long-ago"}`), 0o600)

	// One-shot: exit 3, with what to run and, Google's, why it recurs.
	code, _, stderr := f.run("fetch", "test")
	for _, want := range []string{"invalid_grant", `run "popfetch auth test"`, "7 days", `"Testing"`} {
		if code != exitAuth || !strings.Contains(stderr, want) {
			t.Fatalf("one-shot: exit %d, want 3 and %q:\n%s", code, want, stderr)
		}
	}

	d := f.startDaemon("daemon", "--interval", "1s")
	d.waitFor("the account to stop", func() bool {
		return strings.Contains(d.stderr.String(), "this account stops polling until popfetch auth saves a new token")
	})
	other := func() schedule.JobStatus {
		_, st := f.status()
		return st.Accounts[1]
	}
	d.waitFor("the other account to poll 3 times", func() bool { return other().Polls >= 3 })
	_, st := f.status()
	a := st.Accounts[0]
	if a.Name != "test" || !a.NeedsAuth || a.Polls != 1 || !a.Next.IsZero() || !strings.Contains(a.LastError, `run "popfetch auth test"`) {
		t.Fatalf("status of the stopped account: %+v", a)
	}
	if g := strings.Count(prov.Grants(), "refresh_token"); g != 2 { // the one-shot run's and the daemon's
		t.Fatalf("%d refresh requests, want 2 (%s)", g, prov.Grants())
	}
	_, out, _ := f.run("status")
	if !strings.Contains(out, "stopped: needs popfetch auth") {
		t.Fatalf("popfetch status:\n%s", out)
	}
	// A one-shot popfetch wakes the daemon: it does not poll the stopped
	// account, and exits 3 for it.
	code, _, stderr = f.run()
	if code != exitAuth || !strings.Contains(stderr, "stopped until a new authorization") {
		t.Fatalf("wake: exit %d\n%s", code, stderr)
	}
	if _, st := f.status(); st.Accounts[0].Polls != 1 {
		t.Fatalf("the wake polled the stopped account: %+v", st.Accounts[0])
	}

	code, out, stderr = f.run("auth", "test")
	if code != exitMail || !strings.Contains(out, "The running daemon polls test again") {
		t.Fatalf("auth: exit %d\n%s%s", code, out, stderr)
	}
	d.waitFor("the account to poll again", func() bool {
		_, st := f.status()
		return st.Accounts[0].LastResult == "ok" && !st.Accounts[0].NeedsAuth
	})
	if f.countMaildir() != 2 {
		t.Fatalf("%d messages delivered after auth", f.countMaildir())
	}
	if !strings.Contains(d.stderr.String(), "the token file has changed (popfetch auth): polling again") {
		t.Fatalf("log:\n%s", d.stderr.String())
	}
}

// TestTokenWatch: an account is watched from a poll that needs auth to
// the change of its token file; a poll that ends otherwise forgets it.
func TestTokenWatch(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a.json")
	needs := func() error {
		prov := oauth2test.NewProvider(oauth2test.Config{ClientID: "c"})
		defer prov.Close()
		_, err := oauth2token.New(oauth2token.Config{TokenURL: prov.URL() + "/token", ClientID: "c", File: file}).Token(context.Background())
		return &fetch.Error{Account: "a", Kind: fetch.KindAuth, Err: err}
	}
	var w tokenWatch
	err := needs() // no file yet
	w.note("a", err)
	w.note("b", errors.New("network down"))
	if c := w.changed(); len(c) != 0 {
		t.Fatalf("changed %v before any change", c)
	}
	oauth2token.Save(file, &oauth2.Token{RefreshToken: "r"})
	if c := w.changed(); len(c) != 1 || c[0] != "a" {
		t.Fatalf("changed %v after the file appeared", c)
	}
	w.note("a", needs()) // refused again: watched from this file on
	if c := w.changed(); len(c) != 0 {
		t.Fatalf("changed %v with the file as it was", c)
	}
	oauth2token.Save(file, &oauth2.Token{RefreshToken: "r2"})
	if c := w.changed(); len(c) != 1 {
		t.Fatalf("changed %v after the file was replaced", c)
	}
	w.note("a", nil)
	if c := w.changed(); len(c) != 0 {
		t.Fatalf("changed %v after a poll that worked", c)
	}
}
