package oauth2token

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Bounds of the loopback redirect listener.
const (
	// maxRedirectHeader bounds a request's header: a redirect carries a
	// code and a state of a few hundred octets; a larger request is
	// refused by net/http (431) before it is read.
	maxRedirectHeader = 16 << 10
	// maxBadRedirects is how many requests that are not the awaited
	// redirect (wrong state, no code, another path) the listener answers
	// before it gives up: whatever sends them is not the browser.
	maxBadRedirects = 50
	// redirectReadTimeout bounds the reading of one request.
	redirectReadTimeout = 10 * time.Second
	// maxPasted bounds the redirected address pasted in headless mode.
	maxPasted = 16 << 10
)

// ErrDenied means the user (or the provider) refused the authorization:
// the redirect carried error=access_denied or another error.
var ErrDenied = errors.New("the authorization was refused")

// Authorization is one run of the authorization code grant with PKCE
// (RFC 7636, S256) for an installed application whose redirect goes to a
// loopback address (RFC 8252 section 7.3). Start it with
// Source.NewAuthorization; send the user to URL; give the address the
// browser was redirected to to Finish (or let Serve receive it).
type Authorization struct {
	src      *Source
	oauth    oauth2.Config
	state    string
	verifier string
	// URL is the address the user opens to sign in and consent.
	URL string
	// RedirectURI is where the provider sends the browser back.
	RedirectURI string
}

// NewAuthorization starts an authorization whose redirect goes to
// redirectURI (http://127.0.0.1:PORT/ for a loopback listener). The
// state and the PKCE verifier are fresh random values.
func (s *Source) NewAuthorization(redirectURI string) (*Authorization, error) {
	if s.cfg.AuthURL == "" {
		return nil, &Error{Err: errors.New("no auth_url (or provider) is configured")}
	}
	oc := *s.oauth
	oc.Endpoint.AuthURL = s.cfg.AuthURL
	oc.RedirectURL = redirectURI
	state, err := randomState()
	if err != nil {
		return nil, &Error{Err: err}
	}
	a := &Authorization{src: s, oauth: oc, state: state, verifier: oauth2.GenerateVerifier(), RedirectURI: redirectURI}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(a.verifier)}
	for _, k := range slices.Sorted(maps.Keys(s.cfg.AuthParams)) {
		opts = append(opts, oauth2.SetAuthURLParam(k, s.cfg.AuthParams[k]))
	}
	if s.cfg.LoginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", s.cfg.LoginHint))
	}
	a.URL = oc.AuthCodeURL(state, opts...)
	return a, nil
}

// randomState returns 32 random octets, base64url: the state parameter
// that ties the redirect to this authorization (RFC 6749 section 10.12).
func randomState() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// RedirectError is a redirect that is not this authorization's: a wrong
// or missing state, no code. Finish returns it for a pasted address; Serve
// answers such requests and goes on waiting.
type RedirectError struct{ Reason string }

func (e *RedirectError) Error() string { return "not the redirect popfetch waits for: " + e.Reason }

// code checks the query of a redirect and returns its code. An error the
// provider sent with the right state is ErrDenied; anything else is a
// *RedirectError.
func (a *Authorization) code(q url.Values) (string, error) {
	state := q.Get("state")
	switch {
	case state == "" && q.Get("code") == "" && q.Get("error") == "":
		return "", &RedirectError{Reason: "it has neither code, error nor state"}
	case len(q["state"]) != 1 || subtle.ConstantTimeCompare([]byte(state), []byte(a.state)) != 1:
		// An error without our state may come from anyone: it ends
		// nothing (RFC 6749 section 10.12, RFC 8252 section 8.9).
		return "", &RedirectError{Reason: "its state is not the one popfetch sent"}
	case q.Get("error") != "":
		msg := printable(q.Get("error"))
		if d := q.Get("error_description"); d != "" {
			msg += " (" + printable(d) + ")"
		}
		return "", fmt.Errorf("%w: the provider redirected with %s", ErrDenied, msg)
	case len(q["code"]) != 1 || q.Get("code") == "":
		return "", &RedirectError{Reason: "it has no code"}
	}
	return q.Get("code"), nil
}

// Finish takes the address the browser was redirected to (pasted by the
// user in headless mode: the whole URL, or just its query), checks its
// state, exchanges the code with the PKCE verifier and saves the tokens.
func (a *Authorization) Finish(ctx context.Context, redirected string) error {
	redirected = strings.TrimSpace(redirected)
	if len(redirected) > maxPasted {
		return &Error{Err: &RedirectError{Reason: fmt.Sprintf("it is longer than %d KiB", maxPasted>>10)}}
	}
	raw := redirected
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[i+1:]
	} else if strings.Contains(raw, "://") {
		return &Error{Err: &RedirectError{Reason: "the address has no query (?code=...&state=...); paste the whole address from the browser's address bar"}}
	}
	if i := strings.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i]
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return &Error{Err: &RedirectError{Reason: "its query does not parse"}}
	}
	code, err := a.code(q)
	if err != nil {
		return &Error{Err: err}
	}
	return a.exchange(ctx, code)
}

// exchange trades the code for tokens (with the verifier) and saves them.
func (a *Authorization) exchange(ctx context.Context, code string) error {
	s := a.src
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.http)
	tok, err := a.oauth.Exchange(ctx, code, oauth2.VerifierOption(a.verifier))
	if err != nil {
		return s.explain("exchanging the authorization code", err)
	}
	return s.adopt(tok, "Google issues one with access_type=offline and prompt=consent; Microsoft needs the offline_access scope")
}

// Listen opens the loopback listener for a redirect: 127.0.0.1 on a port
// the system chooses, else [::1] (RFC 8252 section 7.3 and 8.3: a loopback
// IP literal, not "localhost", which a resolver might send elsewhere). It
// returns the listener and the redirect URI that points at it.
func Listen() (net.Listener, string, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		var err6 error
		if ln, err6 = net.Listen("tcp6", "[::1]:0"); err6 != nil {
			return nil, "", fmt.Errorf("listening on a loopback address for the redirect: %w", err)
		}
	}
	return ln, "http://" + ln.Addr().String() + "/", nil
}

// Page is the text of the page the browser shows after the redirect.
type Page struct{ Title, Text string }

// Serve answers requests on ln until the redirect of this authorization
// arrives, then exchanges its code and saves the tokens, shows the
// browser a page that says how it went, and returns. It goes on waiting
// after a request that is not the redirect (another path, a wrong state),
// up to maxBadRedirects of them; a redirect with an error and the right
// state ends it with ErrDenied. ctx bounds the wait. Serve closes ln.
func (a *Authorization) Serve(ctx context.Context, ln net.Listener, done Page) error {
	type outcome struct{ err error }
	var (
		mu       sync.Mutex
		finished bool
		bad      int
	)
	result := make(chan outcome, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if finished {
			writePage(w, http.StatusGone, Page{"Already done", "popfetch has finished waiting for this authorization. You can close this tab."})
			return
		}
		fail := func(status int, p Page) {
			writePage(w, status, p)
			if bad++; bad >= maxBadRedirects {
				finished = true
				result <- outcome{&Error{Err: fmt.Errorf("%d requests to the redirect address were not the redirect: giving up", bad)}}
			}
		}
		if r.Method != http.MethodGet {
			fail(http.StatusMethodNotAllowed, Page{"Not allowed", "popfetch waits for a GET redirect here."})
			return
		}
		if r.URL.Path != "/" {
			fail(http.StatusNotFound, Page{"Not found", "popfetch waits for the redirect at /."})
			return
		}
		code, err := a.code(r.URL.Query())
		var rerr *RedirectError
		switch {
		case errors.As(err, &rerr):
			fail(http.StatusBadRequest, Page{"Not this authorization", "This request does not belong to the authorization popfetch started (" + rerr.Reason + "). popfetch goes on waiting."})
			return
		case err != nil:
			finished = true
			writePage(w, http.StatusForbidden, Page{"Not authorized", "The authorization was refused; popfetch got no token. Run popfetch auth again to retry."})
			result <- outcome{&Error{Err: err}}
			return
		}
		finished = true
		// Exchange before answering, so that the page tells the truth.
		xctx, cancel := context.WithTimeout(ctx, a.src.http.Timeout)
		err = a.exchange(xctx, code)
		cancel()
		if err != nil {
			writePage(w, http.StatusBadGateway, Page{"Not authorized", "popfetch could not exchange the code for a token: see its message in the terminal."})
		} else {
			writePage(w, http.StatusOK, done)
		}
		result <- outcome{err}
	})
	srv := &http.Server{Handler: h, MaxHeaderBytes: maxRedirectHeader,
		ReadHeaderTimeout: redirectReadTimeout, ReadTimeout: redirectReadTimeout,
		WriteTimeout: redirectReadTimeout + a.src.http.Timeout, IdleTimeout: redirectReadTimeout,
		ErrorLog: discardLog()}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var err error
	select {
	case o := <-result:
		err = o.err
	case <-ctx.Done():
		err = &Error{temporary: true, Err: fmt.Errorf("waiting for the redirect from the browser: %w", ctx.Err())}
	case serr := <-served:
		err = &Error{Err: fmt.Errorf("the redirect listener stopped: %w", serr)}
	}
	// Let the answer reach the browser, then close the listener.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	srv.Shutdown(sctx)
	cancel()
	return err
}

// writePage answers with a small page; nothing of the request is in it.
func writePage(w http.ResponseWriter, status int, p Page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	h.Set("Connection", "close")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>popfetch: %s</title>"+
		"<style>body{font-family:sans-serif;max-width:40em;margin:4em auto}</style></head>\n"+
		"<body><h1>%s</h1><p>%s</p></body></html>\n",
		html.EscapeString(p.Title), html.EscapeString(p.Title), html.EscapeString(p.Text))
}

// discardLog keeps net/http's complaints about bad requests (from
// whatever connects to the listener) off the terminal.
func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }
