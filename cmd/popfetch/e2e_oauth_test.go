package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/popfetch/popfetch/config"
	"github.com/popfetch/popfetch/fetch/oauth2token/oauth2test"
)

// loopbackFixture is a POP3S server that takes the first access token
// the provider issues, and a config whose [account.oauth2] uses the
// loopback flow against the in-process provider, which wants the client
// secret as Google does.
func loopbackFixture(t *testing.T, pc oauth2test.Config) (*cliFixture, *oauth2test.Provider) {
	t.Helper()
	pc.ClientID, pc.ClientSecret = "popfetch-test", "installed-app-secret"
	prov := oauth2test.NewProvider(pc)
	t.Cleanup(prov.Close)
	f := tlsCLIFixture(t, oauth2test.AccessToken(1), fmt.Sprintf(`
[account.oauth2]
token_url = %q
auth_url = %q
flow = "loopback"
client_id = "popfetch-test"
client_secret = "installed-app-secret"
scopes = ["pop"]
`, prov.URL()+"/token", prov.URL()+"/authorize"))
	return f, prov
}

// authBinary starts the built popfetch auth with the fixture's config,
// with no way to start a browser.
func authBinary(t *testing.T, f *cliFixture, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, popfetchBinary(t), append([]string{"--config", f.config, "--state-dir", f.stateDir, "auth"}, args...)...)
	var env []string
	for _, e := range os.Environ() {
		if k, _, _ := strings.Cut(e, "="); k != "BROWSER" && k != "DISPLAY" && k != "WAYLAND_DISPLAY" {
			env = append(env, e)
		}
	}
	cmd.Env = env
	return cmd
}

var authURLRE = regexp.MustCompile(`http://127\.0\.0\.1:\d+/authorize\?\S+`)

// output is what popfetch writes, read to the end in the background.
type output struct {
	buf syncBuffer
	eof chan struct{} // closed at the end
}

func (o *output) String() string { return o.buf.String() }

// all waits for the end of the output and returns it.
func (o *output) all(t *testing.T) string {
	t.Helper()
	select {
	case <-o.eof:
	case <-time.After(15 * time.Second):
		t.Fatalf("the output did not end:\n%s", o.String())
	}
	return o.String()
}

// waitForURL reads r to its end in the background, and returns the
// authorization URL as soon as it appears.
func waitForURL(t *testing.T, r io.Reader) (string, *output) {
	t.Helper()
	o := &output{eof: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		defer close(o.eof)
		br := bufio.NewReader(r)
		sent := false
		for {
			line, err := br.ReadString('\n')
			o.buf.Write([]byte(line))
			if u := authURLRE.FindString(line); u != "" && !sent {
				found <- u
				sent = true
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case u := <-found:
		return u, o
	case <-o.eof:
		t.Fatalf("no authorization URL in the output:\n%s", o.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("no authorization URL within 15 s:\n%s", o.String())
	}
	return "", nil
}

// TestAuthLoopbackE2E: the built binary runs the loopback flow; the test
// is the browser, which follows the provider's redirect back to popfetch;
// fetch then logs in with the token saved.
func TestAuthLoopbackE2E(t *testing.T) {
	f, prov := loopbackFixture(t, oauth2test.Config{})
	cmd := authBinary(t, f, "test")
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	u, seen := waitForURL(t, stdout)
	browser := &http.Client{Timeout: 10 * time.Second} // follows the redirect to 127.0.0.1
	resp, err := browser.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "popfetch is authorized") {
		t.Fatalf("the browser shows %d:\n%s", resp.StatusCode, page)
	}
	out := seen.all(t)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("popfetch auth: %v\n%s%s", err, out, stderr.String())
	}
	// No browser could be started: popfetch also takes a pasted address
	// (standard input is /dev/null here), and the listener the redirect.
	for _, want := range []string{"No browser was started here", "paste it here",
		"Authorized. The refresh token is saved in " + filepath.Join(f.stateDir, "oauth2", "test.json")} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if errs := prov.AuthErrors(); len(errs) > 0 {
		t.Fatalf("the provider refused the authorization request: %v", errs)
	}
	if strings.Contains(out, "installed-app-secret") || strings.Contains(out, oauth2test.RefreshToken(1)) {
		t.Fatalf("the output holds a secret:\n%s", out)
	}
	code, _, stderr2 := f.run("fetch")
	if code != exitMail || f.countMaildir() != 2 {
		t.Fatalf("fetch after auth: exit %d\n%s", code, stderr2)
	}
	if g := prov.Grants(); g != "authorize authorization_code" {
		t.Fatalf("grants %q", g)
	}
}

// TestAuthLoopbackDeniedE2E: the user refuses consent: exit 3, no token.
func TestAuthLoopbackDeniedE2E(t *testing.T) {
	f, _ := loopbackFixture(t, oauth2test.Config{Deny: true})
	cmd := authBinary(t, f, "test")
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	u, seen := waitForURL(t, stdout)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("page status %d", resp.StatusCode)
	}
	seen.all(t)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != exitAuth || !strings.Contains(stderr.String(), "access_denied") {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(f.stateDir, "oauth2", "test.json")); err == nil {
		t.Fatal("a token file was written")
	}
}

// follow asks the provider for the authorization, as a browser on another
// machine would, and returns the address it is sent back to (which that
// browser could not open).
func follow(t *testing.T, u string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("the provider answered %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// TestAuthNoBrowserPasteE2E: --no-browser through a pipe: a wrong address
// pasted first is refused with the reason, the right one completes.
func TestAuthNoBrowserPasteE2E(t *testing.T) {
	f, _ := loopbackFixture(t, oauth2test.Config{})
	cmd := authBinary(t, f, "--no-browser", "test")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	u, seen := waitForURL(t, stdout)
	back := follow(t, u)
	fmt.Fprintf(stdin, "%s\n", strings.Replace(back, "state=", "state=forged", 1))
	fmt.Fprintf(stdin, "%s\n", back)
	seen.all(t)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("popfetch auth: %v\n%s%s", err, seen, stderr.String())
	}
	if !strings.Contains(stderr.String(), "its state is not the one popfetch sent; paste the address again") {
		t.Fatalf("the wrong address was not explained:\n%s", stderr.String())
	}
	if out := seen.String(); strings.Contains(out, "No browser was started") || !strings.Contains(out, "paste it here") {
		t.Fatalf("output:\n%s", out)
	}
	if code, _, e := f.run("fetch"); code != exitMail {
		t.Fatalf("fetch after auth: exit %d\n%s", code, e)
	}
}

// TestAuthNoBrowserTerminalE2E: --no-browser on a terminal, as over SSH.
func TestAuthNoBrowserTerminalE2E(t *testing.T) {
	f, _ := loopbackFixture(t, oauth2test.Config{})
	master, slavePath := openPTY(t)
	slave, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	cmd := authBinary(t, f, "--no-browser", "test")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	u, seen := waitForURL(t, master)
	// The terminal's line discipline delivers the pasted line on Enter.
	master.WriteString(follow(t, u) + "\r")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("popfetch auth: %v\n%s", err, seen)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("popfetch auth did not end:\n%s", seen)
	}
	if _, err := os.Stat(filepath.Join(f.stateDir, "oauth2", "test.json")); err != nil {
		t.Fatal(err)
	}
}

// TestAuthTarget: --target gets the delivery target's token into its own
// file, through the in-package hook that stands for a target's table; an
// account whose target has none is a usage error.
func TestAuthTarget(t *testing.T) {
	f, prov := loopbackFixture(t, oauth2test.Config{})
	code, _, stderr := f.run("auth", "--target", "test")
	if code != exitConfig || !strings.Contains(stderr, "the delivery target of account test has no oauth2 table") {
		t.Fatalf("no target table: exit %d\n%s", code, stderr)
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		t.Fatal(err)
	}
	table := *cfg.Accounts[0].OAuth2
	file := tokenFile(f.stateDir, "test", sideGmail, "")
	p := &proc{notify: notifySignals, targetOAuth2: func(a config.Account, stateDir string) (*config.OAuth2, string, bool) {
		return &table, tokenFile(stateDir, a.Name, sideGmail, table.RefreshTokenFile), true
	}}
	pr, pw := io.Pipe()
	p.stdin = pr
	var stdout, errOut syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, p, []string{"popfetch", "--config", f.config, "--state-dir", f.stateDir, "auth", "--target", "--no-browser", "test"}, &stdout, &errOut)
	}()
	deadline := time.Now().Add(10 * time.Second)
	var u string
	for u == "" && time.Now().Before(deadline) {
		u = authURLRE.FindString(stdout.String())
		time.Sleep(10 * time.Millisecond)
	}
	if u == "" {
		t.Fatalf("no URL:\n%s", stdout.String())
	}
	if !strings.Contains(stdout.String(), "To let popfetch deliver the mail of test") {
		t.Errorf("output:\n%s", stdout.String())
	}
	fmt.Fprintln(pw, follow(t, u))
	if code := <-done; code != exitMail {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), errOut.String())
	}
	if file != filepath.Join(f.stateDir, "oauth2", "test.gmail.json") {
		t.Fatalf("target token file %s", file)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tokenFile(f.stateDir, "test", sidePOP, "")); err == nil {
		t.Fatal("the POP side's token file was written")
	}
	_ = prov
}

func TestTokenFile(t *testing.T) {
	for _, tc := range []struct{ side, configured, want string }{
		{sidePOP, "", "/s/oauth2/work.json"},
		{sideIMAP, "", "/s/oauth2/work.imap.json"},
		{sideGmail, "", "/s/oauth2/work.gmail.json"},
		{sideGmail, "/x/t.json", "/x/t.json"},
	} {
		if got := tokenFile("/s", "work", tc.side, tc.configured); got != tc.want {
			t.Errorf("tokenFile(%q, %q) = %q, want %q", tc.side, tc.configured, got, tc.want)
		}
	}
	if _, _, ok := targetOAuth2(config.Account{Name: "work", Maildir: "/m"}, "/s"); ok {
		t.Error("targetOAuth2 found a table for a Maildir target")
	}
	if _, _, ok := targetOAuth2(config.Account{Name: "work", IMAP: &config.IMAP{Password: config.Secret{}}}, "/s"); ok {
		t.Error("targetOAuth2 found a table for an IMAP target that logs in with a password")
	}
	imapTable := &config.OAuth2{ClientID: "c"}
	a := config.Account{Name: "work", IMAP: &config.IMAP{OAuth2: imapTable}, OAuth2: &config.OAuth2{ClientID: "pop"}}
	if o, file, ok := targetOAuth2(a, "/s"); !ok || o != imapTable || file != "/s/oauth2/work.imap.json" {
		t.Errorf("IMAP target: %v %q %v, want its own table and /s/oauth2/work.imap.json", o, file, ok)
	}
	if got := imapOAuth2Config(a, "/s"); got.File != "/s/oauth2/work.imap.json" || !strings.Contains(got.Reauth, "--target") {
		t.Errorf("the IMAP target's token source: file %q, reauth %q", got.File, got.Reauth)
	}
}
