// Package oauth2test is an in-process OAuth 2.0 provider for tests: a
// token endpoint that answers the refresh-token and device-code grants,
// a device authorization endpoint (RFC 8628), an authorization endpoint
// for the code grant with PKCE (RFC 7636) that redirects to a loopback
// address at once, as if the user had signed in and consented (RFC 8252),
// and a token introspection endpoint (RFC 7662) through which a mail
// server checks the access tokens it is given.
package oauth2test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// Provider is a running test provider. Its fields may be changed between
// requests through its methods only.
type Provider struct {
	// ClientID is the client it accepts.
	ClientID string

	srv *httptest.Server

	mu       sync.Mutex
	requests []string // grant types, in order ("device" for the device endpoint)
	refresh  string   // the refresh token it accepts
	rotate   bool
	status   int
	pending  int
	issued   int
	username string            // the owner of the access tokens issued next
	valid    map[string]string // active access tokens, to their owners
	checked  []string          // tokens introspected, in order
	secret   string            // the client secret the code grant needs; "" for none
	deny     bool
	codes    map[string]authCode // codes issued and not yet used
	ncodes   int
	authErrs []string // what the authorization endpoint refused, in order
}

// authCode is an authorization code issued, with what its exchange must
// show.
type authCode struct{ challenge, redirect string }

// Config sets up a Provider.
type Config struct {
	ClientID string
	// Refresh is the refresh token accepted at first.
	Refresh string
	// Rotate issues a new refresh token with every refresh.
	Rotate bool
	// Pending is how many times the device grant answers
	// authorization_pending before it succeeds.
	Pending int
	// Username is the user introspection names as the owner of the
	// access tokens issued (until SetUsername).
	Username string
	// ClientSecret, if set, is required with the authorization code
	// grant, as Google requires an installed app's secret even with
	// PKCE.
	ClientSecret string
	// Deny makes the authorization endpoint redirect with
	// error=access_denied, as when the user refuses consent.
	Deny bool
}

// NewProvider starts a provider on loopback. Its token endpoint is
// URL()+"/token", its device endpoint URL()+"/device", its authorization
// endpoint URL()+"/authorize", its introspection endpoint
// URL()+"/introspect".
func NewProvider(cfg Config) *Provider {
	p := &Provider{ClientID: cfg.ClientID, refresh: cfg.Refresh, rotate: cfg.Rotate, pending: cfg.Pending,
		username: cfg.Username, valid: map[string]string{}, secret: cfg.ClientSecret, deny: cfg.Deny,
		codes: map[string]authCode{}}
	p.srv = httptest.NewServer(p)
	return p
}

// AuthErrors returns what the authorization endpoint refused so far (a
// missing or plain PKCE challenge, a redirect that is not loopback), in
// order.
func (p *Provider) AuthErrors() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.authErrs...)
}

// URL is the provider's base URL.
func (p *Provider) URL() string { return p.srv.URL }

// Close stops the provider.
func (p *Provider) Close() { p.srv.Close() }

// AccessToken returns the access token issued n-th (from 1).
func AccessToken(n int) string { return "access-" + strconv.Itoa(n) }

// RefreshToken returns the refresh token issued n-th (from 1).
func RefreshToken(n int) string { return "refresh-" + strconv.Itoa(n) }

// SetStatus makes every request fail with this HTTP status (0: normal).
func (p *Provider) SetStatus(code int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = code
}

// Revoke makes the provider refuse every refresh token (invalid_grant).
func (p *Provider) Revoke() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refresh = "\x00revoked"
}

// IssueAccessToken issues an access token outside any grant, as a
// token another program obtained would be, and returns it.
func (p *Provider) IssueAccessToken() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.issued++
	tok := AccessToken(p.issued)
	p.valid[tok] = p.username
	return tok
}

// SetUsername makes the access tokens issued from now on belong to user.
func (p *Provider) SetUsername(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.username = user
}

// ExpireAccessTokens makes introspection report every access token issued
// so far as inactive, as after their lifetime ends.
func (p *Provider) ExpireAccessTokens() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.valid)
}

// Introspected returns the tokens introspected so far, in order.
func (p *Provider) Introspected() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.checked...)
}

// Grants returns the grant types requested so far, space-separated.
func (p *Provider) Grants() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.requests, " ")
}

// ServeHTTP answers the token and device endpoints.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r.ParseForm()
	w.Header().Set("Content-Type", "application/json")
	if p.status != 0 {
		w.WriteHeader(p.status)
		w.Write([]byte(`{"error":"temporarily_unavailable","access_token":"leak-me"}`))
		return
	}
	if r.URL.Path == "/introspect" {
		// RFC 7662: an inactive token is {"active":false} and nothing
		// else, whatever the reason.
		tok := r.Form.Get("token")
		p.checked = append(p.checked, tok)
		owner, ok := p.valid[tok]
		if !ok {
			w.Write([]byte(`{"active":false}`))
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"active": true, "username": owner, "token_type": "Bearer", "scope": "pop"})
		return
	}
	if r.URL.Path == "/authorize" {
		p.authorize(w, r)
		return
	}
	if r.URL.Path == "/device" {
		p.requests = append(p.requests, "device")
		json.NewEncoder(w).Encode(map[string]any{"device_code": "dev-1", "user_code": "ABCD-EFGH",
			"verification_uri": "https://example.test/device", "expires_in": 60, "interval": 1})
		return
	}
	grant := r.Form.Get("grant_type")
	p.requests = append(p.requests, grant)
	if r.Form.Get("client_id") != p.ClientID {
		w.WriteHeader(400)
		w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	switch grant {
	case "refresh_token":
		if r.Form.Get("refresh_token") != p.refresh {
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"invalid_grant","error_description":"AADSTS70008: The refresh token has expired\n"}`))
			return
		}
	case "authorization_code":
		// RFC 6749 section 4.1.3 and RFC 7636 section 4.5: the code once,
		// the same redirect_uri, and a verifier whose S256 hash is the
		// challenge.
		c, ok := p.codes[r.Form.Get("code")]
		delete(p.codes, r.Form.Get("code"))
		sum := sha256.Sum256([]byte(r.Form.Get("code_verifier")))
		switch {
		case !ok || r.Form.Get("redirect_uri") != c.redirect ||
			base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge:
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"invalid_grant","error_description":"code, redirect_uri or code_verifier wrong"}`))
			return
		case r.Form.Get("client_secret") != p.secret:
			w.WriteHeader(401)
			w.Write([]byte(`{"error":"invalid_client","error_description":"client_secret is missing or wrong"}`))
			return
		}
	case "urn:ietf:params:oauth:grant-type:device_code":
		if p.pending > 0 {
			p.pending--
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"authorization_pending"}`))
			return
		}
	default:
		w.WriteHeader(400)
		w.Write([]byte(`{"error":"unsupported_grant_type"}`))
		return
	}
	p.issued++
	p.valid[AccessToken(p.issued)] = p.username
	resp := map[string]any{"access_token": AccessToken(p.issued), "token_type": "Bearer", "expires_in": 3600}
	if p.rotate || grant != "refresh_token" {
		p.refresh = RefreshToken(p.issued)
		resp["refresh_token"] = p.refresh
	}
	json.NewEncoder(w).Encode(resp)
}

// authorize is the authorization endpoint: it checks the request as a
// provider would (RFC 6749 section 4.1.1, RFC 7636 section 4.3, RFC 8252
// section 7.3) and, the user being taken to have consented, redirects to
// redirect_uri with a code and the state. A request it refuses gets a 400
// page, as a provider shows an error instead of redirecting to an
// address it does not trust.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p.requests = append(p.requests, "authorize")
	refuse := func(why string) {
		p.authErrs = append(p.authErrs, why)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(400)
		w.Write([]byte(why))
	}
	ru, err := url.Parse(q.Get("redirect_uri"))
	switch {
	case q.Get("client_id") != p.ClientID:
		refuse("unknown client_id")
		return
	case q.Get("response_type") != "code":
		refuse("response_type is not code")
		return
	case err != nil || ru.Scheme != "http" || (ru.Hostname() != "127.0.0.1" && ru.Hostname() != "::1") || ru.Port() == "":
		refuse("redirect_uri is not a loopback IP literal with a port")
		return
	case q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43:
		refuse("no S256 code_challenge")
		return
	case q.Get("state") == "":
		refuse("no state")
		return
	}
	back := url.Values{"state": {q.Get("state")}}
	if p.deny {
		back.Set("error", "access_denied")
	} else {
		p.ncodes++
		code := "code-" + strconv.Itoa(p.ncodes)
		p.codes[code] = authCode{challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
		back.Set("code", code)
	}
	ru.RawQuery = back.Encode()
	w.Header().Set("Location", ru.String())
	w.WriteHeader(http.StatusFound)
}
