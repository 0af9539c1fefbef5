// Package oauth2test is an in-process OAuth 2.0 provider for tests: a
// token endpoint that answers the refresh-token and device-code grants,
// a device authorization endpoint (RFC 8628), and a token introspection
// endpoint (RFC 7662) through which a mail server checks the access
// tokens it is given.
package oauth2test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
}

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
}

// NewProvider starts a provider on loopback. Its token endpoint is
// URL()+"/token", its device endpoint URL()+"/device", its introspection
// endpoint URL()+"/introspect".
func NewProvider(cfg Config) *Provider {
	p := &Provider{ClientID: cfg.ClientID, refresh: cfg.Refresh, rotate: cfg.Rotate, pending: cfg.Pending,
		username: cfg.Username, valid: map[string]string{}}
	p.srv = httptest.NewServer(p)
	return p
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
