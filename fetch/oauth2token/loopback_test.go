package oauth2token

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/popfetch/popfetch/fetch/oauth2token/oauth2test"
)

// loopbackSetup starts a provider and an authorization whose redirect
// goes to a listener that Serve answers in the background.
func loopbackSetup(t *testing.T, pc oauth2test.Config) (*oauth2test.Provider, *Authorization, string, chan error) {
	t.Helper()
	p, cfg, file := setup(t, pc)
	cfg.AuthURL = p.URL() + "/authorize"
	cfg.ClientSecret = pc.ClientSecret
	cfg.AuthParams = map[string]string{"access_type": "offline", "prompt": "consent"}
	cfg.LoginHint = "me@example.com"
	ln, redirect, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg).NewAuthorization(redirect)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln, Page{"Authorized", "done"}) }()
	return p, a, file, done
}

// noFollow is a browser that shows us the redirect instead of following it.
var noFollow = &http.Client{Timeout: 10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := noFollow.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusFound {
		return resp.StatusCode, resp.Header.Get("Location")
	}
	return resp.StatusCode, string(body)
}

// browse plays the browser: the authorization URL, then the redirect.
func browse(t *testing.T, a *Authorization) (int, string) {
	t.Helper()
	code, loc := get(t, a.URL)
	if code != http.StatusFound {
		t.Fatalf("authorization endpoint: %d %s", code, loc)
	}
	return get(t, loc)
}

func TestLoopbackFlow(t *testing.T) {
	p, a, file, done := loopbackSetup(t, oauth2test.Config{ClientSecret: "shh"})
	u, _ := url.Parse(a.URL)
	q := u.Query()
	for k, want := range map[string]string{"code_challenge_method": "S256", "access_type": "offline",
		"prompt": "consent", "login_hint": "me@example.com", "response_type": "code", "redirect_uri": a.RedirectURI} {
		if q.Get(k) != want {
			t.Errorf("authorization URL: %s = %q, want %q", k, q.Get(k), want)
		}
	}
	if !strings.HasPrefix(a.RedirectURI, "http://127.0.0.1:") {
		t.Errorf("redirect URI %q", a.RedirectURI)
	}
	status, page := browse(t, a)
	if status != 200 || !strings.Contains(page, "Authorized") {
		t.Fatalf("page: %d %s", status, page)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ft := readFile(t, file); ft.RefreshToken != "refresh-1" || ft.AccessToken != "access-1" {
		t.Fatalf("token file %+v", ft)
	}
	if errs := p.AuthErrors(); len(errs) > 0 {
		t.Fatalf("the provider refused: %v", errs)
	}
	if g := p.Grants(); g != "authorize authorization_code" {
		t.Fatalf("grants %q", g)
	}
	// A second redirect after the first: the listener is closed.
	if _, err := noFollow.Get(a.RedirectURI + "?code=x&state=y"); err == nil {
		t.Fatal("the listener still answers after the authorization ended")
	}
}

// TestLoopbackHostileRedirects: requests that are not the redirect get a
// page and leave the flow waiting; the redirect then completes it.
func TestLoopbackHostileRedirects(t *testing.T) {
	p, a, file, done := loopbackSetup(t, oauth2test.Config{})
	code, loc := get(t, a.URL)
	if code != http.StatusFound {
		t.Fatal(code, loc)
	}
	real, _ := url.Parse(loc)
	base := a.RedirectURI
	for _, tc := range []struct {
		name, url string
		status    int
	}{
		{"wrong state", base + "?code=" + real.Query().Get("code") + "&state=forged", 400},
		{"no state", base + "?code=abc", 400},
		{"denied without our state", base + "?error=access_denied&state=forged", 400},
		{"two states", base + "?code=abc&state=" + real.Query().Get("state") + "&state=x", 400},
		{"empty", base, 400},
		{"favicon", base + "favicon.ico", 404},
		{"markup in the state", base + "?code=a&state=%3Cscript%3Ealert(1)%3C/script%3E", 400},
		{"huge query", base + "?code=" + strings.Repeat("A", 64<<10) + "&state=x", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, page := get(t, tc.url)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %.200s", status, tc.status, page)
			}
			if strings.Contains(page, "<script>") {
				t.Fatalf("the page reflects the request: %s", page)
			}
		})
	}
	select {
	case err := <-done:
		t.Fatalf("the flow ended on a hostile request: %v", err)
	default:
	}
	if status, page := get(t, loc); status != 200 {
		t.Fatalf("the real redirect: %d %s", status, page)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ft := readFile(t, file); ft.RefreshToken == "" {
		t.Fatal("no refresh token saved")
	}
	_ = p
}

func TestLoopbackDenied(t *testing.T) {
	_, a, file, done := loopbackSetup(t, oauth2test.Config{Deny: true})
	status, page := browse(t, a)
	if status != http.StatusForbidden || !strings.Contains(page, "refused") {
		t.Fatalf("page: %d %s", status, page)
	}
	err := <-done
	var oe *Error
	if !errors.Is(err, ErrDenied) || !errors.As(err, &oe) || oe.Temporary() || !strings.Contains(err.Error(), "access_denied") {
		t.Fatalf("error %v", err)
	}
	if _, serr := New(Config{File: file}).load(); serr == nil {
		t.Fatal("a token file was written")
	}
}

func TestLoopbackWrongSecret(t *testing.T) {
	// Google refuses an installed app's code exchange without its secret.
	p, cfg, _ := setup(t, oauth2test.Config{ClientSecret: "right"})
	cfg.AuthURL = p.URL() + "/authorize"
	cfg.ClientSecret = "wrong"
	ln, redirect, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	a, _ := New(cfg).NewAuthorization(redirect)
	done := make(chan error, 1)
	go func() { done <- a.Serve(context.Background(), ln, Page{"ok", "ok"}) }()
	if status, _ := browse(t, a); status != http.StatusBadGateway {
		t.Fatalf("status %d", status)
	}
	err = <-done
	if err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("error %v", err)
	}
}

func TestLoopbackTimeout(t *testing.T) {
	_, cfg, _ := setup(t, oauth2test.Config{})
	cfg.AuthURL = "https://example.test/authorize"
	ln, redirect, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	a, _ := New(cfg).NewAuthorization(redirect)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = a.Serve(ctx, ln, Page{})
	var oe *Error
	if !errors.As(err, &oe) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v", err)
	}
}

// TestFinishPasted is the headless variant: the address pasted back.
func TestFinishPasted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		paste  func(loc string) string
		denied bool
		bad    string
	}{
		{"whole address", func(loc string) string { return "  " + loc + "\r\n" }, false, ""},
		{"query only", func(loc string) string { return loc[strings.IndexByte(loc, '?')+1:] }, false, ""},
		{"with fragment", func(loc string) string { return loc + "#" }, false, ""},
		{"wrong state", func(loc string) string { return strings.Replace(loc, "state=", "state=x", 1) }, false, "state"},
		{"no query", func(string) string { return "http://127.0.0.1:1/" }, false, "no query"},
		{"huge", func(loc string) string { return loc + strings.Repeat("A", 1<<20) }, false, "longer"},
		{"garbage", func(string) string { return "%zz" }, false, "parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, cfg, file := setup(t, oauth2test.Config{})
			cfg.AuthURL = p.URL() + "/authorize"
			a, err := New(cfg).NewAuthorization("http://127.0.0.1:9/")
			if err != nil {
				t.Fatal(err)
			}
			_, loc := get(t, a.URL)
			err = a.Finish(context.Background(), tc.paste(loc))
			var re *RedirectError
			switch {
			case tc.bad == "" && err != nil:
				t.Fatal(err)
			case tc.bad == "":
				if ft := readFile(t, file); ft.RefreshToken == "" {
					t.Fatal("no refresh token")
				}
			case !errors.As(err, &re) || !strings.Contains(err.Error(), tc.bad):
				t.Fatalf("error %v, want a RedirectError about %q", err, tc.bad)
			}
		})
	}
}

func TestNeedsAuth(t *testing.T) {
	p, cfg, file := setup(t, oauth2test.Config{Refresh: "refresh-0"})
	cfg.Reauth = "popfetch auth --target work"
	cfg.RefusedHint = "why it recurs"
	if err := Save(file, &oauth2.Token{RefreshToken: "refresh-0"}); err != nil {
		t.Fatal(err)
	}
	p.Revoke()
	_, err := New(cfg).Token(context.Background())
	var oe *Error
	if !errors.As(err, &oe) || !oe.NeedsAuth() || oe.Temporary() {
		t.Fatalf("error %v", err)
	}
	for _, want := range []string{"invalid_grant", `run "popfetch auth --target work"`, "why it recurs"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	// A provider that is down is not a reason to re-authorize.
	p.SetStatus(503)
	_, err = New(cfg).Token(context.Background())
	if !errors.As(err, &oe) || oe.NeedsAuth() || !oe.Temporary() {
		t.Fatalf("503: %v", err)
	}
}

// TestRefusedTokenRereadsFile: after an invalid_grant the Source reads
// the file again, so that a daemon takes up the token "popfetch auth"
// saved meanwhile.
func TestRefusedTokenRereadsFile(t *testing.T) {
	_, cfg, file := setup(t, oauth2test.Config{Refresh: "good"})
	Save(file, &oauth2.Token{RefreshToken: "bad"})
	s := New(cfg)
	if _, err := s.Token(context.Background()); err == nil {
		t.Fatal("a refused refresh token worked")
	}
	Save(file, &oauth2.Token{RefreshToken: "good"})
	if tok, err := s.Token(context.Background()); err != nil || tok != "access-1" {
		t.Fatalf("after the new file: %q, %v", tok, err)
	}
}
