// Package saslmech implements the client side of the SASL mechanisms that
// github.com/emersion/go-sasl does not have: CRAM-MD5 (RFC 2195),
// SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677) and Google's and
// Microsoft's XOAUTH2. Each satisfies go-sasl's Client interface, so that
// a protocol client drives them like go-sasl's own PLAIN, LOGIN,
// OAUTHBEARER and EXTERNAL.
//
// A mechanism that authenticates the server as well (SCRAM) implements
// Verifier: the exchange has succeeded only when the server's final
// message has been checked, which a protocol client must ask for after
// the server's success reply.
package saslmech

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/emersion/go-sasl"
	"github.com/popfetch/popfetch/fetch/termsafe"
)

// Mechanism names.
const (
	CRAMMD5     = "CRAM-MD5"
	SCRAMSHA1   = "SCRAM-SHA-1"
	SCRAMSHA256 = "SCRAM-SHA-256"
	XOAuth2     = "XOAUTH2"
)

// Verifier is implemented by mechanisms that authenticate the server. After
// the server reports success, Verify returns nil only if the server proved
// that it knows the credentials.
type Verifier interface {
	Verify() error
}

// cramMD5 is RFC 2195's challenge-response with HMAC-MD5.
type cramMD5 struct {
	user, password string
	done           bool
}

// NewCRAMMD5Client returns a CRAM-MD5 client. CRAM-MD5 keeps the password
// off the wire but is only as strong as HMAC-MD5 and needs the server to
// store the password in the clear; prefer SCRAM.
func NewCRAMMD5Client(user, password string) sasl.Client {
	return &cramMD5{user: user, password: password}
}

func (c *cramMD5) Start() (string, []byte, error) { return CRAMMD5, nil, nil }

func (c *cramMD5) Next(challenge []byte) ([]byte, error) {
	if c.done {
		return nil, sasl.ErrUnexpectedServerChallenge
	}
	if len(challenge) == 0 {
		return nil, errors.New("CRAM-MD5: empty challenge")
	}
	c.done = true
	mac := hmac.New(md5.New, []byte(c.password))
	mac.Write(challenge)
	return []byte(c.user + " " + hex.EncodeToString(mac.Sum(nil))), nil
}

// xoauth2 is the XOAUTH2 mechanism of Google and Microsoft: the user name
// and a bearer token in one initial response.
type xoauth2 struct {
	user, token string
	refused     error
}

// NewXOAuth2Client returns an XOAUTH2 client for an OAuth 2.0 access token.
// It implements pop3.Refusal.
func NewXOAuth2Client(user, token string) sasl.Client {
	return &xoauth2{user: user, token: token}
}

func (x *xoauth2) Start() (string, []byte, error) {
	return XOAuth2, []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

// Next is called only when the server refuses the token: its challenge is
// a JSON error, which is kept for Refused and answered with the empty
// response Google and Microsoft document, so that the server ends the
// exchange with -ERR. A second challenge ends it from this side.
func (x *xoauth2) Next(challenge []byte) ([]byte, error) {
	if x.refused != nil {
		return nil, x.refused
	}
	x.refused = OAuthError(XOAuth2, challenge)
	return []byte{}, nil
}

// Refused returns what the server's error challenge said, or nil.
func (x *xoauth2) Refused() error { return x.refused }

// OAuthError describes the JSON error challenge of a refused OAuth token
// (RFC 7628 section 3.2.2; XOAUTH2 uses the same form). Only the status,
// scope and schemes are reported; nothing of the challenge is echoed that
// the server did not put there.
func OAuthError(mech string, challenge []byte) error {
	var e struct {
		Status  string `json:"status"`
		Scope   string `json:"scope"`
		Schemes string `json:"schemes"`
	}
	if err := json.Unmarshal(challenge, &e); err != nil || e.Status == "" {
		return fmt.Errorf("%s: the server refused the token", mech)
	}
	msg := fmt.Sprintf("%s: the server refused the token (status %s", mech, clean(e.Status))
	if e.Scope != "" {
		msg += ", scope " + clean(e.Scope)
	}
	return errors.New(msg + ")")
}

// clean keeps server-supplied text to one short line a terminal shows as
// is.
func clean(s string) string { return termsafe.Short(s, 100) }

// oauthBearer wraps go-sasl's OAUTHBEARER client (RFC 7628) so that a
// refused token is reported by OAuthError: go-sasl's own error repeats the
// server's status text unfiltered, control characters included.
type oauthBearer struct {
	sasl.Client
	refused error
}

// NewOAuthBearerClient returns an OAUTHBEARER client for an OAuth 2.0
// access token; host and port are the server's, which RFC 7628 sends. It
// implements pop3.Refusal.
func NewOAuthBearerClient(user, token, host string, port int) sasl.Client {
	return &oauthBearer{Client: sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{
		Username: user, Token: token, Host: host, Port: port})}
}

// Next answers the server's error challenge with the dummy response %x01
// (RFC 7628 section 3.2.3) and keeps what it said for Refused. A second
// challenge, or one that is not an error, ends the exchange from this side.
func (o *oauthBearer) Next(challenge []byte) ([]byte, error) {
	if o.refused != nil {
		return nil, o.refused
	}
	if _, err := o.Client.Next(challenge); err == nil {
		return nil, sasl.ErrUnexpectedServerChallenge
	}
	o.refused = OAuthError(sasl.OAuthBearer, challenge)
	return []byte{0x01}, nil
}

// Refused returns what the server's error challenge said, or nil.
func (o *oauthBearer) Refused() error { return o.refused }
