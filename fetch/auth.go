package fetch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-sasl"

	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/fetch/saslmech"
)

// The SASL authentication modes: each names one mechanism (RFC 5034).
const (
	AuthPlain       AuthMode = "plain"         // SASL PLAIN
	AuthLogin       AuthMode = "login"         // SASL LOGIN
	AuthCRAMMD5     AuthMode = "cram-md5"      // SASL CRAM-MD5
	AuthSCRAMSHA1   AuthMode = "scram-sha-1"   // SASL SCRAM-SHA-1
	AuthSCRAMSHA256 AuthMode = "scram-sha-256" // SASL SCRAM-SHA-256
	AuthXOAuth2     AuthMode = "xoauth2"       // SASL XOAUTH2 with an OAuth 2.0 token
	AuthOAuthBearer AuthMode = "oauthbearer"   // SASL OAUTHBEARER with an OAuth 2.0 token
	AuthExternal    AuthMode = "external"      // SASL EXTERNAL: the TLS client certificate
)

// IsOAuth reports whether the mode sends an OAuth 2.0 token.
func (m AuthMode) IsOAuth() bool { return m == AuthXOAuth2 || m == AuthOAuthBearer }

// sasl returns the SASL mechanism name of a SASL mode, or "".
func (m AuthMode) sasl() string {
	switch m {
	case AuthAuto, AuthUser, AuthAPOP:
		return ""
	}
	return strings.ToUpper(string(m))
}

// autoOrder is the preference of auth = "auto", strongest first, among the
// password mechanisms. On a TLS connection the MD5-based CRAM-MD5 and APOP
// add nothing (and need the server to keep the password in the clear), so
// they are not chosen; USER/PASS is as strong as PLAIN there and can be
// pipelined with the listing, so it comes before it.
var (
	autoTLS       = []AuthMode{AuthSCRAMSHA256, AuthSCRAMSHA1, AuthUser, AuthPlain, AuthLogin}
	autoPlaintext = []AuthMode{AuthSCRAMSHA256, AuthSCRAMSHA1, AuthCRAMMD5, AuthAPOP, AuthUser, AuthPlain, AuthLogin}
)

// chooseAuth picks the way to log in from the account's auth setting and
// what the server offers. A mode the server does not offer is an error
// naming what it does offer, never a fallback to something else.
func (s *session) chooseAuth() (AuthMode, error) {
	a := s.acct
	offered := s.caps.SASLMechanisms()
	offers := func(m AuthMode) bool {
		switch m {
		case AuthUser:
			return s.caps == nil || s.caps.Has("USER")
		case AuthAPOP:
			return s.c.APOPTimestamp() != ""
		}
		return slices.Contains(offered, m.sasl())
	}
	if a.Auth != AuthAuto && a.Auth != "" {
		if name := a.Auth.sasl(); name != "" && !offers(a.Auth) {
			what := "no SASL mechanisms"
			if s.caps == nil {
				what = "no capabilities (it does not know CAPA)"
			} else if len(offered) > 0 {
				what = "SASL " + strings.Join(offered, " ")
			}
			return "", &Error{Account: a.Name, Kind: KindConfig,
				Err: fmt.Errorf("auth = %q, but the server offers %s; set auth = \"auto\" or a mechanism it offers", a.Auth, what)}
		}
		return a.Auth, nil
	}
	// auto: a client certificate, then a token, then a password.
	if a.hasClientCert() && offers(AuthExternal) {
		return AuthExternal, nil
	}
	if a.Token != nil {
		for _, m := range []AuthMode{AuthOAuthBearer, AuthXOAuth2} {
			if offers(m) {
				return m, nil
			}
		}
		return "", &Error{Account: a.Name, Kind: KindConfig,
			Err: fmt.Errorf("the account has an OAuth2 token, but the server offers neither OAUTHBEARER nor XOAUTH2 (it offers SASL %s)", strings.Join(offered, " "))}
	}
	order := autoTLS
	if !s.c.IsTLS() {
		order = autoPlaintext
	}
	for _, m := range order {
		if offers(m) {
			return m, nil
		}
	}
	// The server lists neither USER nor a mechanism we know: try USER
	// anyway, as RFC 1939 servers that know CAPA but not its USER tag
	// still take it.
	return AuthUser, nil
}

// hasClientCert reports whether the TLS configuration presents a client
// certificate.
func (a *Account) hasClientCert() bool {
	return a.TLSConfig != nil && (len(a.TLSConfig.Certificates) > 0 || a.TLSConfig.GetClientCertificate != nil)
}

// secret returns the password, or for the OAuth modes the access token
// (from Token if set, else from the password source, e.g. a
// password_command that prints a token).
func (s *session) secret(ctx context.Context, mode AuthMode) (string, error) {
	a := s.acct
	get, what := a.Password, "password"
	if mode.IsOAuth() && a.Token != nil {
		get, what = a.Token, "OAuth2 token"
	}
	if get == nil {
		return "", &Error{Account: a.Name, Kind: KindConfig, Err: fmt.Errorf("auth %s needs a %s, and none is configured", mode, what)}
	}
	s.step = "password"
	v, err := get(ctx)
	if err != nil {
		var temp interface{ Temporary() bool }
		switch {
		case errors.Is(err, context.Canceled):
			return "", err
		case what == "OAuth2 token" && errors.As(err, &temp) && temp.Temporary():
			// The provider could not be reached: try again later.
			return "", &Error{Account: a.Name, Kind: KindNetwork, Err: err}
		case what == "OAuth2 token":
			// A refused or missing refresh token: the user must act.
			return "", &Error{Account: a.Name, Kind: KindAuth, Err: err}
		}
		return "", &Error{Account: a.Name, Kind: KindConfig, Err: err}
	}
	return v, nil
}

// tokenRefused reports whether err is the server refusing an access token
// from Account.Token, and if so tells TokenRefused, so that the next call
// to Token gets a new one. A -ERR with another response code ([IN-USE],
// [SYS/TEMP]) is not about the token.
func (s *session) tokenRefused(mode AuthMode, err error) bool {
	a := s.acct
	if !mode.IsOAuth() || a.Token == nil || a.TokenRefused == nil {
		return false
	}
	var perr *pop3.Error
	var serr *pop3.SASLError
	if !errors.As(err, &serr) && !(errors.As(err, &perr) && (perr.Code == "" || perr.HasCode(pop3.CodeAuth))) {
		return false
	}
	a.TokenRefused()
	return true
}

// mechanism returns the SASL client for a SASL mode.
func (s *session) mechanism(mode AuthMode, secret string) (sasl.Client, error) {
	a := s.acct
	switch mode {
	case AuthPlain:
		return sasl.NewPlainClient("", a.User, secret), nil
	case AuthLogin:
		return sasl.NewLoginClient(a.User, secret), nil
	case AuthCRAMMD5:
		return saslmech.NewCRAMMD5Client(a.User, secret), nil
	case AuthSCRAMSHA1, AuthSCRAMSHA256:
		return saslmech.NewSCRAMClient(mode.sasl(), a.User, secret)
	case AuthXOAuth2:
		return saslmech.NewXOAuth2Client(a.User, secret), nil
	case AuthOAuthBearer:
		return saslmech.NewOAuthBearerClient(a.User, secret, a.Server, a.Port), nil
	case AuthExternal:
		return sasl.NewExternalClient(""), nil
	}
	return nil, fmt.Errorf("auth %q is not a SASL mechanism", mode)
}

// login authenticates as the account says, never sending a secret over an
// unencrypted connection unless allow_insecure_auth is set. With USER/PASS
// or APOP on a server that pipelines it asks for the listing in the same
// write and returns it; otherwise the listing is nil.
func (s *session) login(ctx context.Context) (*pop3.Listing, error) {
	a := s.acct
	if !s.c.IsTLS() && !a.AllowInsecureAuth {
		return nil, &Error{Account: a.Name, Kind: KindConfig,
			Err: errors.New("refusing to send credentials over an unencrypted connection (set allow_insecure_auth = true to allow it)")}
	}
	mode, err := s.chooseAuth()
	if err != nil {
		return nil, err
	}
	if mode == AuthExternal && !a.hasClientCert() {
		return nil, &Error{Account: a.Name, Kind: KindConfig, Err: errors.New("auth = \"external\" needs client_cert and client_key")}
	}
	s.authMode = mode
	if s.caps.Has("UTF8") {
		// RFC 6856: only when advertised (Gmail hangs up on it).
		s.step = "UTF8"
		var perr *pop3.Error
		if err := s.c.UTF8(ctx); err != nil && !errors.As(err, &perr) {
			return nil, err
		}
	}
	secret := ""
	if mode != AuthExternal {
		if secret, err = s.secret(ctx, mode); err != nil {
			return nil, err
		}
	}
	if name := mode.sasl(); name != "" {
		mech, err := s.mechanism(mode, secret)
		if err != nil {
			return nil, &Error{Account: a.Name, Kind: KindConfig, Err: err}
		}
		s.step = "AUTH"
		err = s.c.Auth(ctx, mech)
		if err != nil && s.tokenRefused(mode, err) {
			// The token was refused before its stated expiry (revoked,
			// or the clocks disagree). Get a fresh one and try once
			// more: RFC 5034 lets a client send AUTH again after a
			// failure. A token that did not change is not retried.
			fresh, terr := s.secret(ctx, mode)
			switch {
			case terr != nil:
				return nil, terr // e.g. the refresh token revoked too
			case fresh == secret:
				return nil, err
			}
			if mech, err = s.mechanism(mode, fresh); err != nil {
				return nil, &Error{Account: a.Name, Kind: KindConfig, Err: err}
			}
			s.step = "AUTH"
			if err = s.c.Auth(ctx, mech); err != nil {
				s.tokenRefused(mode, err)
			}
		}
		return nil, err
	}
	var l pop3.Listing
	switch {
	case mode == AuthAPOP && !s.pipelining():
		s.step = "APOP"
		return nil, s.c.APOP(ctx, a.User, secret)
	case mode == AuthAPOP:
		s.step = "APOP"
		l, err = s.c.APOPAndList(ctx, a.User, secret, true, s.needSizesAtOnce())
	case !s.pipelining():
		s.step = "PASS"
		return nil, s.c.Login(ctx, a.User, secret)
	default:
		s.step = "PASS"
		l, err = s.c.LoginAndList(ctx, a.User, secret, true, s.needSizesAtOnce())
	}
	if err != nil {
		return nil, err
	}
	return &l, nil
}
