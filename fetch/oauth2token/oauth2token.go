// Package oauth2token keeps the OAuth 2.0 tokens of one account: it
// refreshes access tokens with a stored refresh token, saves a rotated
// refresh token atomically, and obtains the first one with the device
// authorization grant (RFC 8628) or the authorization code grant with PKCE
// and a loopback redirect (RFC 8252, RFC 7636).
//
// The token file is JSON (access token, its expiry, refresh token), mode
// 600, so that a run from cron reuses an access token that is still valid
// instead of refreshing at every poll. Nothing of a token ever appears in
// an error.
package oauth2token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/popfetch/popfetch/fetch/termsafe"
	"golang.org/x/oauth2"
)

// Config says where and how to get tokens.
type Config struct {
	TokenURL      string
	DeviceAuthURL string
	// AuthURL is the authorization endpoint of the loopback flow.
	AuthURL string
	// AuthParams are added to the authorization URL (Google:
	// access_type=offline and prompt=consent, without which no refresh
	// token is issued on a second authorization).
	AuthParams map[string]string
	// LoginHint, if set, is sent as login_hint: the account to sign in as.
	LoginHint    string
	ClientID     string
	ClientSecret string
	Scopes       []string
	// File is the token file.
	File string
	// HTTPTimeout bounds each request to the provider; 0 means 30 s.
	HTTPTimeout time.Duration
	// Reauth is the command that gets a new refresh token, named in the
	// error when the provider refuses the stored one; "" says
	// "popfetch auth" for this account.
	Reauth string
	// RefusedHint, if set, is added to that error: why it may happen
	// again (Google: a consent screen in "Testing").
	RefusedHint string
}

// ErrNoToken means the token file does not exist yet.
var ErrNoToken = errors.New("no OAuth2 token yet")

// Error is a failure to get an access token.
type Error struct {
	File string
	Err  error
	// temporary: see Temporary.
	temporary bool
	// needsAuth: see NeedsAuth.
	needsAuth bool
}

func (e *Error) Error() string { return "oauth2: " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether trying later may work: the provider could not
// be reached, or answered with a server error. If not, the user must act
// (a revoked refresh token: run "popfetch auth" again).
func (e *Error) Temporary() bool { return e.temporary }

// NeedsAuth reports whether nothing but a new authorization ("popfetch
// auth") can help: the provider refused the refresh token (invalid_grant:
// revoked, expired), or there is none. Trying again with the same token
// file is futile, and may count against the client at the provider.
func (e *Error) NeedsAuth() bool { return e.needsAuth }

// reauth is the advice for an error that NeedsAuth.
func (c *Config) reauth() string {
	cmd := c.Reauth
	if cmd == "" {
		return "run \"popfetch auth\" for this account"
	}
	return "run \"" + cmd + "\""
}

// Source hands out access tokens for one account. It is safe for
// concurrent use.
type Source struct {
	cfg   Config
	oauth *oauth2.Config
	http  *http.Client

	mu  sync.Mutex
	tok *oauth2.Token // the last token loaded or fetched
}

// New returns a Source; it reads nothing until Token is called.
func New(cfg Config) *Source {
	t := cfg.HTTPTimeout
	if t == 0 {
		t = 30 * time.Second
	}
	return &Source{
		cfg: cfg,
		oauth: &oauth2.Config{
			ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Scopes: cfg.Scopes,
			// Client credentials in the form, as Google and Microsoft
			// take them; auto-detection would send a failing request
			// with them in a header first.
			Endpoint: oauth2.Endpoint{TokenURL: cfg.TokenURL, DeviceAuthURL: cfg.DeviceAuthURL,
				AuthStyle: oauth2.AuthStyleInParams},
		},
		http: &http.Client{Timeout: t},
	}
}

// expiryMargin is how long before its expiry an access token is renewed,
// so that it does not run out between here and the server's check.
const expiryMargin = 2 * time.Minute

// Token returns a valid access token, refreshing it (and saving the result)
// when the stored one is missing or about to expire.
func (s *Source) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == nil {
		tok, err := s.load()
		if err != nil {
			return "", err
		}
		s.tok = tok
	}
	if s.tok.AccessToken != "" && time.Until(s.tok.Expiry) > expiryMargin {
		return s.tok.AccessToken, nil
	}
	if s.tok.RefreshToken == "" {
		return "", &Error{File: s.cfg.File, needsAuth: true, Err: fmt.Errorf("%s holds no refresh token: %s", s.cfg.File, s.cfg.reauth())}
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.http)
	old := &oauth2.Token{RefreshToken: s.tok.RefreshToken}
	tok, err := s.oauth.TokenSource(ctx, old).Token()
	if err != nil {
		err = s.explain(whatRefresh, err)
		if oe := (*Error)(nil); errors.As(err, &oe) && oe.NeedsAuth() {
			// Read the file again next time: "popfetch auth" may
			// have put a new token there meanwhile (the daemon
			// keeps its Source).
			s.tok = nil
		}
		return "", err
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = old.RefreshToken // not rotated
	}
	if err := Save(s.cfg.File, tok); err != nil {
		return "", &Error{File: s.cfg.File, Err: err}
	}
	s.tok = tok
	return tok.AccessToken, nil
}

// Invalidate forgets the access token, so that the next Token refreshes:
// for a server that refused a token before its stated expiry.
func (s *Source) Invalidate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != nil {
		s.tok.AccessToken = ""
	}
}

// DeviceAuth starts the device authorization grant: the user opens the
// returned URI and enters the code.
func (s *Source) DeviceAuth(ctx context.Context) (*oauth2.DeviceAuthResponse, error) {
	if s.cfg.DeviceAuthURL == "" {
		return nil, &Error{Err: errors.New("no device_auth_url (or provider) is configured")}
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.http)
	da, err := s.oauth.DeviceAuth(ctx)
	if err != nil {
		return nil, s.explain("starting the device authorization", err)
	}
	return da, nil
}

// WaitDevice polls the provider until the user has approved (or denied)
// the device authorization, then saves the tokens.
func (s *Source) WaitDevice(ctx context.Context, da *oauth2.DeviceAuthResponse) error {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.http)
	tok, err := s.oauth.DeviceAccessToken(ctx, da)
	if err != nil {
		return s.explain("waiting for the authorization", err)
	}
	return s.adopt(tok, "Microsoft needs the offline_access scope")
}

// adopt saves the tokens a first authorization got and serves them from
// then on; without a refresh token there is nothing to keep, and why the
// provider may have left it out is hint.
func (s *Source) adopt(tok *oauth2.Token, hint string) error {
	if tok.RefreshToken == "" {
		return &Error{Err: fmt.Errorf("the provider issued no refresh token (%s)", hint)}
	}
	if err := Save(s.cfg.File, tok); err != nil {
		return &Error{File: s.cfg.File, Err: err}
	}
	s.mu.Lock()
	s.tok = tok
	s.mu.Unlock()
	return nil
}

// whatRefresh is what explain says of a refresh.
const whatRefresh = "refreshing the access token"

// explain turns an oauth2 error into an *Error without any of the
// response body, which may hold a token.
func (s *Source) explain(what string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg := what + ": the provider answered"
		if re.Response != nil {
			msg += " " + re.Response.Status
		}
		if re.ErrorCode != "" {
			msg += fmt.Sprintf(": %s", printable(re.ErrorCode))
		}
		if re.ErrorDescription != "" {
			msg += fmt.Sprintf(" (%s)", printable(re.ErrorDescription))
		}
		temporary := re.Response != nil && re.Response.StatusCode >= 500
		// invalid_grant to a refresh: the stored token is dead. (To a
		// code exchange it means the code was used or expired.)
		needsAuth := re.ErrorCode == "invalid_grant" && what == whatRefresh
		if needsAuth {
			msg += "; the refresh token was revoked or has expired: " + s.cfg.reauth()
			if s.cfg.RefusedHint != "" {
				msg += "; " + s.cfg.RefusedHint
			}
		}
		return &Error{File: s.cfg.File, temporary: temporary && !needsAuth, needsAuth: needsAuth, Err: errors.New(msg)}
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &Error{File: s.cfg.File, temporary: true, Err: fmt.Errorf("%s: %w", what, err)}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &Error{File: s.cfg.File, temporary: true, Err: fmt.Errorf("%s: %w", what, err)}
	}
	return &Error{File: s.cfg.File, Err: fmt.Errorf("%s: %w", what, err)}
}

// printable keeps provider text to one short line a terminal shows as is.
func printable(s string) string { return termsafe.Short(strings.TrimSpace(s), 200) }

// fileToken is the token file's JSON.
type fileToken struct {
	AccessToken  string    `json:"access_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	RefreshToken string    `json:"refresh_token"`
}

// load reads the token file. It refuses one that group or others can
// read.
func (s *Source) load() (*oauth2.Token, error) {
	f, err := os.Open(s.cfg.File)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &Error{File: s.cfg.File, needsAuth: true, Err: fmt.Errorf("%w in %s: %s", ErrNoToken, s.cfg.File, s.cfg.reauth())}
	}
	if err != nil {
		return nil, &Error{File: s.cfg.File, Err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, &Error{File: s.cfg.File, Err: err}
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, &Error{File: s.cfg.File, Err: fmt.Errorf("%s can be read by others (mode %04o): chmod 600 it", s.cfg.File, fi.Mode().Perm())}
	}
	var ft fileToken
	if err := json.NewDecoder(io.LimitReader(f, 1<<20)).Decode(&ft); err != nil {
		// The decoder's message may quote the file; say only where.
		return nil, &Error{File: s.cfg.File, needsAuth: true, Err: fmt.Errorf("%s is not a token file: %s", s.cfg.File, s.cfg.reauth())}
	}
	return &oauth2.Token{AccessToken: ft.AccessToken, TokenType: ft.TokenType, Expiry: ft.Expiry, RefreshToken: ft.RefreshToken}, nil
}

// Save writes tok to path atomically: a temporary file in the same
// directory, mode 600, fsync'd, renamed over path, and the directory
// fsync'd. A crash leaves the old file or the new one, never a mix. The
// directory is created (mode 700) if missing.
func Save(path string, tok *oauth2.Token) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(fileToken{AccessToken: tok.AccessToken, TokenType: tok.TokenType,
		Expiry: tok.Expiry, RefreshToken: tok.RefreshToken}, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
