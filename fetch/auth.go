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

// AuthModes lists every authentication mode: what the configuration may
// name.
var AuthModes = []AuthMode{AuthAuto, AuthUser, AuthAPOP, AuthPlain, AuthLogin, AuthCRAMMD5,
	AuthSCRAMSHA1, AuthSCRAMSHA256, AuthXOAuth2, AuthOAuthBearer, AuthExternal}

// IsOAuth reports whether the mode sends an OAuth 2.0 token.
func (m AuthMode) IsOAuth() bool { return m == AuthXOAuth2 || m == AuthOAuthBearer }

// sasl returns the SASL mechanism name of a SASL mode, or "" (USER,
// APOP, auto, and a mode that is none of AuthModes, which is never taken
// for a mechanism's name).
func (m AuthMode) sasl() string {
	switch m {
	case AuthAuto, AuthUser, AuthAPOP:
		return ""
	}
	if !slices.Contains(AuthModes, m) {
		return ""
	}
	return strings.ToUpper(string(m))
}

// The families of login methods auth = "auto" tries, strongest first.
// Within a family the methods check the same secret the same way on the
// server, so once one is refused the rest of its family would be too;
// auto tries the first the server offers and moves on to the next family.
// A family that can fail for a reason other than a wrong password comes
// before the plain password: SCRAM needs the server to hold SCRAM
// credentials, CRAM-MD5 and APOP a secret in the clear (APOP's often in a
// database of its own that most users have no entry in). On a TLS
// connection CRAM-MD5 and APOP add nothing over TLS and are not tried;
// USER/PASS is as strong as PLAIN there and costs one flight less.
var (
	familiesTLS = [][]AuthMode{
		{AuthSCRAMSHA256, AuthSCRAMSHA1},
		{AuthUser, AuthPlain, AuthLogin},
	}
	familiesPlaintext = [][]AuthMode{
		{AuthSCRAMSHA256, AuthSCRAMSHA1},
		{AuthCRAMMD5},
		{AuthAPOP},
		{AuthUser, AuthPlain, AuthLogin},
	}
)

// offers reports whether the server offers the login method m.
func (s *session) offers(m AuthMode) bool {
	switch m {
	case AuthUser:
		return s.caps == nil || s.caps.Has("USER")
	case AuthAPOP:
		return s.c.APOPTimestamp() != ""
	}
	return slices.Contains(s.caps.SASLMechanisms(), m.sasl())
}

// chooseAuth returns the login methods to try, in order, from the
// account's auth setting and what the server offers: one method for a
// named mode, or for "auto" the first method the server offers of each
// family (see familiesTLS), with hint (the method auto settled on in an
// earlier poll, if the server still offers it) first. A named mode the
// server does not offer is an error naming what it does offer, never a
// fallback to something else.
func (s *session) chooseAuth(hint AuthMode) ([]AuthMode, error) {
	a := s.acct
	offered := s.caps.SASLMechanisms()
	if a.Auth != "" && !slices.Contains(AuthModes, a.Auth) {
		return nil, &Error{Account: a.Name, Kind: KindConfig, Err: fmt.Errorf("auth = %q is not a way popfetch knows to log in", a.Auth)}
	}
	if a.Auth != AuthAuto && a.Auth != "" {
		if name := a.Auth.sasl(); name != "" && !s.offers(a.Auth) {
			if s.noCapa {
				// Perhaps a connection reset, not a server without
				// CAPA: worth another try, not a configuration error.
				return nil, &Error{Account: a.Name, Kind: KindNetwork,
					Err: fmt.Errorf("the server hung up when asked for its capabilities (CAPA), so whether it offers auth = %q is unknown", a.Auth)}
			}
			what := "no SASL mechanisms"
			switch {
			case s.caps == nil:
				what = "no capabilities (it does not know CAPA)"
			case len(offered) > 0:
				what = "SASL " + strings.Join(offered, " ")
			}
			return nil, &Error{Account: a.Name, Kind: KindConfig,
				Err: fmt.Errorf("auth = %q, but the server offers %s; set auth = \"auto\" or a mechanism it offers", a.Auth, what)}
		}
		return []AuthMode{a.Auth}, nil
	}
	// auto: a token is all an OAuth account has.
	if a.Token != nil {
		for _, m := range []AuthMode{AuthOAuthBearer, AuthXOAuth2} {
			if s.offers(m) {
				return []AuthMode{m}, nil
			}
		}
		return nil, &Error{Account: a.Name, Kind: KindConfig,
			Err: fmt.Errorf("the account has an OAuth2 token, but the server offers neither OAUTHBEARER nor XOAUTH2 (it offers SASL %s)", strings.Join(offered, " "))}
	}
	var modes []AuthMode
	if a.hasClientCert() && s.offers(AuthExternal) {
		modes = append(modes, AuthExternal)
		if a.Password == nil {
			return modes, nil
		}
	}
	families := familiesTLS
	if !s.c.IsTLS() {
		families = familiesPlaintext
	}
	password := false
	for _, fam := range families {
		for _, m := range fam {
			if s.offers(m) {
				modes = append(modes, m)
				password = password || m == AuthUser || m == AuthPlain || m == AuthLogin
				break
			}
		}
	}
	if !password {
		// The server lists neither USER nor a password mechanism: try
		// USER anyway, as RFC 1939 servers that know CAPA but not its
		// USER tag still take it.
		modes = append(modes, AuthUser)
	}
	if i := slices.Index(modes, hint); i > 0 {
		modes = slices.Insert(slices.Delete(modes, i, i+1), 0, hint)
	}
	return modes, nil
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
		return saslmech.NewSCRAMClientCached(mode.sasl(), a.User, secret, s.memo.saltedPasswords())
	case AuthXOAuth2:
		return saslmech.NewXOAuth2Client(a.User, secret), nil
	case AuthOAuthBearer:
		return saslmech.NewOAuthBearerClient(a.User, secret, a.Server, a.Port), nil
	case AuthExternal:
		return sasl.NewExternalClient(""), nil
	}
	return nil, fmt.Errorf("auth %q is not a SASL mechanism", mode)
}

// login authenticates as the account says, never sending a secret over
// an unencrypted connection unless allow_insecure_auth is set. With
// auth = "auto" a method the server refuses (a -ERR about the credentials,
// with no response code or [AUTH]) is followed by the next one chooseAuth
// lists; anything else (the mailbox locked, [SYS/TEMP], a SCRAM server
// that cannot prove it knows the password, a lost connection) ends the
// login at once. Nothing is sent behind a login command before its
// reply: the listing follows in the next flight (see list).
func (s *session) login(ctx context.Context) error {
	a := s.acct
	if !s.c.IsTLS() && !a.AllowInsecureAuth {
		return &Error{Account: a.Name, Kind: KindConfig,
			Err: errors.New("refusing to send credentials over an unencrypted connection (set allow_insecure_auth = true to allow it)")}
	}
	modes, err := s.chooseAuth(s.memo.authHint())
	if err != nil {
		return err
	}
	if err := s.utf8(ctx); err != nil {
		return err
	}
	var refused []string
	var secret string
	haveSecret := false
	reconnected := false
	for i := 0; i < len(modes); i++ {
		mode := modes[i]
		if mode == AuthExternal && !a.hasClientCert() {
			return &Error{Account: a.Name, Kind: KindConfig, Err: errors.New("auth = \"external\" needs client_cert and client_key")}
		}
		if mode != AuthExternal && !haveSecret {
			if secret, err = s.secret(ctx, mode); err != nil {
				return err
			}
			haveSecret = true
		}
		s.authMode = mode
		err = withoutSecret(s.loginWith(ctx, mode, secret), secret)
		if err == nil {
			break
		}
		if len(refused) > 0 && !reconnected && isHangUp(err) {
			// Many servers hang up after a refused login: connect
			// again, once, and go on with this method.
			reconnected = true
			s.log.Debug("the server hung up after the refused login; connecting again", "auth", mode)
			s.c.Close()
			if err := s.connect(ctx); err != nil {
				return err
			}
			if err := s.utf8(ctx); err != nil {
				return err
			}
			i--
			continue
		}
		if i == len(modes)-1 || !s.loginRefused(err) {
			if len(refused) > 0 && s.loginRefused(err) {
				refused = append(refused, modeName(mode))
				return &Error{Account: a.Name, Kind: KindAuth,
					Err: fmt.Errorf("the server refused every way to log in that it offers (tried %s): %w", strings.Join(refused, ", "), err)}
			}
			return err
		}
		refused = append(refused, modeName(mode))
		s.log.Debug("login refused; trying the next method", "auth", mode, "error", err.Error())
	}
	if len(refused) > 0 {
		s.memo.setAuthHint(s.authMode)
		s.log.Info(fmt.Sprintf("logged in with %s after the server refused %s; set auth = %q to skip the refused attempts",
			modeName(s.authMode), strings.Join(refused, ", "), s.authMode))
	}
	return nil
}

// withoutSecret hides secret wherever err's text quotes it: a server may
// echo the password in a -ERR (the client redacts those) or in a reply so
// malformed that the protocol error quotes the whole line. The error
// keeps its types for errors.As.
func withoutSecret(err error, secret string) error {
	if err == nil || len(secret) < 4 || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &redactedError{err: err, secret: secret}
}

type redactedError struct {
	err    error
	secret string
}

func (e *redactedError) Error() string {
	return strings.ReplaceAll(e.err.Error(), e.secret, "<redacted>")
}

func (e *redactedError) Unwrap() error { return e.err }

// utf8 sends UTF8 (RFC 6856) where the server advertises it, and only
// there: Gmail hangs up on it.
func (s *session) utf8(ctx context.Context) error {
	if !s.caps.Has("UTF8") {
		return nil
	}
	var perr *pop3.Error
	if err := s.c.UTF8(ctx); err != nil && !errors.As(err, &perr) {
		return err
	}
	return nil
}

// modeName is how a login method is named to the user.
func modeName(m AuthMode) string {
	if name := m.sasl(); name != "" {
		return name
	}
	return strings.ToUpper(string(m))
}

// loginRefused reports whether err is the server refusing the credentials
// of one login method, so that auto may try the next: a -ERR to the login
// command with no response code or [AUTH], unless its text says the
// mailbox is locked (servers without RESP-CODES say so in words).
func (s *session) loginRefused(err error) bool {
	var perr *pop3.Error
	if !errors.As(err, &perr) || !isAuthStep(perr.Command) {
		return false
	}
	return (perr.Code == "" && !mentionsLock(perr.Text)) || perr.HasCode(pop3.CodeAuth)
}

// loginWith logs in with one method.
func (s *session) loginWith(ctx context.Context, mode AuthMode, secret string) error {
	a := s.acct
	s.c.Redact(secret) // a server may echo it in its -ERR
	if name := mode.sasl(); name != "" {
		mech, err := s.mechanism(mode, secret)
		if err != nil {
			return &Error{Account: a.Name, Kind: KindConfig, Err: err}
		}
		err = s.c.Auth(ctx, mech)
		if err != nil && s.tokenRefused(mode, err) {
			// The token was refused before its stated expiry (revoked,
			// or the clocks disagree). Get a fresh one and try once
			// more: RFC 5034 lets a client send AUTH again after a
			// failure. A token that did not change is not retried.
			fresh, terr := s.secret(ctx, mode)
			switch {
			case terr != nil:
				return terr // e.g. the refresh token revoked too
			case fresh == secret:
				return err
			}
			s.c.Redact(fresh)
			if mech, err = s.mechanism(mode, fresh); err != nil {
				return &Error{Account: a.Name, Kind: KindConfig, Err: err}
			}
			if err = s.c.Auth(ctx, mech); err != nil {
				s.tokenRefused(mode, err)
			}
		}
		return err
	}
	if mode == AuthAPOP {
		return s.c.APOP(ctx, a.User, secret)
	}
	return s.c.Login(ctx, a.User, secret, s.pipelining())
}
