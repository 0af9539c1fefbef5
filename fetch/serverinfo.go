package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3"
)

// ServerInfo is what a POP3 server says about itself (mpop's
// --serverinfo): its greeting, its capabilities before and after TLS, the
// TLS connection and certificate chain, and, after a login, its
// capabilities for the user and the size of the mailbox. Every string in
// it came from the server unless said otherwise: show it through termsafe.
type ServerInfo struct {
	Server  string  `json:"server"`  // from the configuration
	Port    int     `json:"port"`    // from the configuration
	Address string  `json:"address"` // the address connected to
	TLSMode TLSMode `json:"tls_mode"`
	// Greeting is the text of the server's +OK greeting.
	Greeting string `json:"greeting"`
	// APOP is whether the greeting holds a timestamp for APOP.
	APOP bool `json:"apop"`
	// CapaBeforeTLS is the CAPA answer on the plaintext connection,
	// before STLS (tls = "starttls" only; nil otherwise, or if the server
	// does not know CAPA).
	CapaBeforeTLS []Capability `json:"capa_before_tls"`
	// Capa is the CAPA answer before login, after TLS; nil if the server
	// does not know CAPA (an RFC 1939 server) or if it could not be read.
	Capa []Capability `json:"capa"`
	// CapaAfterLogin is the CAPA answer after login (LoggedIn only).
	CapaAfterLogin []Capability `json:"capa_after_login"`
	// TLS describes the TLS connection; nil for tls = "none", or if the
	// handshake failed.
	TLS *TLSInfo `json:"tls"`
	// LoggedIn is whether ServerInfo logged in (ServerInfoOptions.Login),
	// and Auth how.
	LoggedIn bool     `json:"logged_in"`
	Auth     AuthMode `json:"auth,omitempty"`
	// Messages and Octets are STAT's answer (LoggedIn only).
	Messages int   `json:"messages"`
	Octets   int64 `json:"octets"`
}

// Capability is one line of a CAPA answer: the capability's name, upper
// case, and its arguments.
type Capability struct {
	Name string   `json:"name"`
	Args []string `json:"args"`
}

// TLSInfo describes a TLS connection and the certificates the server
// presented.
type TLSInfo struct {
	Version     string `json:"version"`      // "TLS 1.3"
	CipherSuite string `json:"cipher_suite"` // "TLS_AES_128_GCM_SHA256"
	// ServerName is the name the certificate was checked for (the
	// account's tls_server_name, else its server); from the configuration.
	ServerName string `json:"server_name"`
	// Verified is whether the certificate passed the account's checks
	// (the CA check, or tls_fingerprint); VerifyError says why not.
	Verified    bool   `json:"verified"`
	VerifyError string `json:"verify_error,omitempty"`
	// Chain is the certificates as the server sent them, its own first.
	Chain []CertInfo `json:"chain"`
}

// CertInfo describes one certificate.
type CertInfo struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Names     []string  `json:"names"` // DNS names and IP addresses it is valid for
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// SHA256 is the fingerprint, colon-separated hex, as tls_fingerprint
	// takes it.
	SHA256 string `json:"sha256"`
}

// ServerInfoOptions are the choices of a ServerInfo call.
type ServerInfoOptions struct {
	// Login also logs in, as a poll does, to read the capabilities the
	// server gives a known user and the size of the mailbox. Only over a
	// connection whose certificate was verified.
	Login bool
	// Trace, if set, receives the protocol trace (secrets redacted).
	Trace io.Writer
}

// ErrUnverified is returned (inside an *Error of KindTLS) by a ServerInfo
// whose server presented a certificate that failed the account's checks;
// the ServerInfo returned with it describes the certificate.
var ErrUnverified = errors.New("the server's certificate did not pass the checks")

// GetServerInfo connects to the account's server and reports what it says
// about itself, without logging in unless o.Login is set: the greeting,
// CAPA before and after STLS, the TLS version, cipher suite and
// certificate chain. It sends nothing but CAPA, STLS and QUIT without a
// login.
//
// A certificate that fails the account's checks (a self-signed server
// without ca_file or tls_fingerprint) does not end the handshake here, so
// that it can be shown: the connection goes on to CAPA and QUIT only,
// nothing secret is sent over it, and the error returned is an *Error of
// KindTLS wrapping ErrUnverified, with the ServerInfo filled in.
//
// What was learned is returned also when err is not nil, as far as it
// got; it is nil only if the connection could not be made at all.
func GetServerInfo(ctx context.Context, acct *Account, o ServerInfoOptions) (*ServerInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, serverInfoCeiling(acct))
	defer cancel()
	info := &ServerInfo{Server: acct.Server, Port: acct.Port, TLSMode: acct.TLS}
	fail := func(err error) (*ServerInfo, error) {
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("serverinfo took longer than %v: %w", serverInfoCeiling(acct), err)
		}
		return info, classify(acct.Name, err)
	}

	// The account's checks run as usual, but their verdict is kept
	// rather than ending the handshake: then the certificate can be
	// shown. Nothing is sent over an unverified connection but CAPA
	// and QUIT.
	tcfg := serverInfoTLSConfig(acct)
	var verifyErr error
	verify := tcfg.VerifyConnection
	tcfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if verify != nil {
			verifyErr = verify(cs)
		}
		return nil
	}
	// A client certificate goes only to a server that passed the checks
	// (crypto/tls verifies the server before it is asked for one, in
	// TLS 1.2 and 1.3 alike).
	if certs, get := tcfg.Certificates, tcfg.GetClientCertificate; len(certs) > 0 || get != nil {
		tcfg.Certificates = nil
		tcfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			switch {
			case verifyErr != nil:
				return &tls.Certificate{}, nil // none
			case get != nil:
				return get(cri)
			}
			for i := range certs {
				if cri.SupportsCertificate(&certs[i]) == nil {
					return &certs[i], nil
				}
			}
			return &certs[0], nil
		}
	}

	addr := net.JoinHostPort(acct.Server, strconv.Itoa(acct.Port))
	popts := &pop3.Options{Timeout: acct.Timeout}
	if o.Trace != nil {
		popts.Debug = &prefixWriter{w: o.Trace, prefix: acct.Name + " "}
	}
	var (
		c   *pop3.Client
		err error
	)
	if acct.TLS == TLSImplicit {
		c, err = pop3.DialTLS(ctx, addr, tcfg, popts)
	} else {
		c, err = pop3.Dial(ctx, addr, popts)
	}
	if err != nil {
		return nil, classify(acct.Name, dialErr(ctx, acct, err))
	}
	defer func() { c.Close() }()
	info.Address = c.RemoteAddr().String()
	info.Greeting = c.Greeting()
	info.APOP = c.APOPTimestamp() != ""

	if acct.TLS == TLSStartTLS {
		caps, err := capa(ctx, c)
		if err != nil {
			return fail(err)
		}
		info.CapaBeforeTLS = capabilityList(caps)
		if err := c.StartTLS(ctx, tcfg); err != nil {
			if errors.Is(err, pop3.ErrNoSTLS) {
				err = &Error{Account: acct.Name, Kind: KindProtocol, Err: err}
			} else {
				err = dialErr(ctx, acct, err)
			}
			return fail(err)
		}
	}
	if cs, ok := c.TLSConnectionState(); ok {
		info.TLS = tlsInfo(cs, tcfg.ServerName, verifyErr)
	}
	caps, err := capa(ctx, c)
	if err != nil {
		return fail(err)
	}
	info.Capa = capabilityList(caps)

	if verifyErr != nil {
		c.Quit(ctx)
		return info, &Error{Account: acct.Name, Kind: KindTLS, Err: fmt.Errorf("%w: %w", ErrUnverified, verifyErr)}
	}
	if o.Login {
		if err := serverInfoLogin(ctx, acct, c, caps, o, info); err != nil {
			return fail(err)
		}
		return info, nil
	}
	if err := c.Quit(ctx); err != nil {
		return fail(err)
	}
	return info, nil
}

// serverInfoCeiling bounds a whole ServerInfo: a handful of exchanges,
// each bounded by the account's timeout.
func serverInfoCeiling(acct *Account) time.Duration {
	t := acct.Timeout
	if t <= 0 {
		t = pop3.DefaultTimeout
	}
	return 8 * t
}

// serverInfoTLSConfig is the account's TLS configuration, never
// resuming a session (a full handshake shows the whole chain), with its
// checks in VerifyConnection, as NewTLSConfig makes them. A configuration
// made another way (crypto/tls verifying during the handshake) gets the
// same checks moved there.
func serverInfoTLSConfig(acct *Account) *tls.Config {
	tcfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if acct.TLSConfig != nil {
		tcfg = acct.TLSConfig.Clone()
	}
	if tcfg.ServerName == "" {
		tcfg.ServerName = acct.Server
	}
	tcfg.ClientSessionCache = nil
	if tcfg.VerifyConnection == nil && !tcfg.InsecureSkipVerify {
		roots, name := tcfg.RootCAs, tcfg.ServerName
		tcfg.InsecureSkipVerify = true
		tcfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter}); err != nil {
				return &CertificateError{Expected: fmt.Sprintf("a certificate for %q from a trusted CA", name), Presented: leaf, Err: err}
			}
			return nil
		}
	}
	return tcfg
}

// capa asks for CAPA; a server that answers -ERR does not know it (nil,
// no error).
func capa(ctx context.Context, c *pop3.Client) (pop3.Capabilities, error) {
	caps, err := c.Capa(ctx)
	var perr *pop3.Error
	if errors.As(err, &perr) {
		return nil, nil
	}
	return caps, err
}

// serverInfoLogin logs in as a poll does, then asks CAPA and STAT.
func serverInfoLogin(ctx context.Context, acct *Account, c *pop3.Client, caps pop3.Capabilities, o ServerInfoOptions, info *ServerInfo) error {
	s := newSession(acct, nil, nil, &Options{Trace: o.Trace})
	s.c, s.caps = c, caps
	s.learnCaps()
	defer func() {
		if s.c != c {
			s.c.Close() // login connected again
		}
	}()
	if err := s.login(ctx); err != nil {
		return err
	}
	info.LoggedIn, info.Auth = true, s.authMode
	after, err := capa(ctx, s.c)
	if err != nil {
		return err
	}
	info.CapaAfterLogin = capabilityList(after)
	n, size, err := s.c.Stat(ctx)
	if err != nil {
		return err
	}
	info.Messages, info.Octets = n, size
	// QUIT without DELE changes nothing on the server.
	return s.c.Quit(ctx)
}

// capabilityList is caps in name order; nil for nil.
func capabilityList(caps pop3.Capabilities) []Capability {
	if caps == nil {
		return nil
	}
	out := make([]Capability, 0, len(caps))
	for name, args := range caps {
		out = append(out, Capability{Name: name, Args: append([]string{}, args...)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// maxChain bounds the certificates described: a server may send many.
const maxChain = 16

func tlsInfo(cs tls.ConnectionState, serverName string, verifyErr error) *TLSInfo {
	t := &TLSInfo{
		Version:     tls.VersionName(cs.Version),
		CipherSuite: tls.CipherSuiteName(cs.CipherSuite),
		ServerName:  serverName,
		Verified:    verifyErr == nil,
	}
	if verifyErr != nil {
		t.VerifyError = verifyErr.Error()
		var ce *CertificateError
		if errors.As(verifyErr, &ce) {
			// Its own error, without the description of the
			// certificate that the chain below gives in full.
			t.VerifyError = "expected " + ce.Expected
			if ce.Err != nil {
				t.VerifyError = ce.Err.Error() + "; " + t.VerifyError
			}
		}
	}
	for i, c := range cs.PeerCertificates {
		if i == maxChain {
			break
		}
		t.Chain = append(t.Chain, certInfo(c))
	}
	return t
}

func certInfo(c *x509.Certificate) CertInfo {
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return CertInfo{
		Subject: c.Subject.String(), Issuer: c.Issuer.String(), Names: names,
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), SHA256: Fingerprint(c),
	}
}

// Policy is an EXPIRE or LOGIN-DELAY capability (RFC 2449 sections 6.5
// and 6.7), read.
type Policy struct {
	// Value is the first argument as the server wrote it: a number (of
	// days for EXPIRE, seconds for LOGIN-DELAY), or "NEVER" (EXPIRE).
	Value string
	// Number is Value as a number; -1 for NEVER or a value that is not
	// one.
	Number int
	// PerUser is whether USER follows: the value varies per user, and
	// CAPA after login tells the user's.
	PerUser bool
}

// ParsePolicy reads the arguments of an EXPIRE or LOGIN-DELAY capability.
// ok is false if there are none.
func ParsePolicy(args []string) (p Policy, ok bool) {
	if len(args) == 0 {
		return Policy{}, false
	}
	p.Value, p.Number = args[0], -1
	if n, err := strconv.Atoi(args[0]); err == nil && n >= 0 {
		p.Number = n
	}
	p.PerUser = len(args) > 1 && strings.EqualFold(args[1], "USER")
	return p, true
}
