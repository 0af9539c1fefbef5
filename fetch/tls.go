package fetch

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/popfetch/popfetch/fetch/termsafe"
)

// TLSOptions are an account's TLS settings beyond its mode.
type TLSOptions struct {
	// CAFile holds the PEM certificates to verify the server against
	// instead of the system's roots.
	CAFile string
	// Fingerprint, if set, is the SHA-256 of the server's certificate
	// (hex, colons allowed). It pins that certificate instead of the CA
	// check: any other certificate is refused, an expired or
	// self-signed one with this fingerprint is accepted.
	Fingerprint string
	// MinVersion is the oldest TLS version accepted; 0 means TLS 1.2.
	MinVersion uint16
	// ServerName is the name to verify the certificate for and to send
	// in SNI; "" means the server's host name.
	ServerName string
	// ClientCert and ClientKey are PEM files of a certificate to present
	// to servers that ask for one.
	ClientCert, ClientKey string
}

// ParseFingerprint reads a SHA-256 fingerprint written as 64 hex digits,
// with or without colons, in either case.
func ParseFingerprint(s string) ([]byte, error) {
	h := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("tls_fingerprint %q: want the SHA-256 of the certificate, 64 hex digits (colons allowed)", s)
	}
	return b, nil
}

// Fingerprint returns the SHA-256 of a certificate as colon-separated hex,
// the form openssl x509 -fingerprint -sha256 prints.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// CertificateError is a server certificate popfetch refused: what it
// expected and what the server presented.
type CertificateError struct {
	Expected  string            // e.g. `a certificate for "pop.example.com" from a trusted CA`
	Presented *x509.Certificate // the server's certificate
	Err       error             // the verification error, if any
	Pinned    bool              // the certificate was refused for not being the one tls_fingerprint names
}

func (e *CertificateError) Error() string {
	var b strings.Builder
	b.WriteString("certificate refused: ")
	if e.Err != nil {
		// x509's errors quote the certificate's names, which are the
		// presenter's to choose (an IA5String may hold a line feed).
		b.WriteString(termsafe.String(e.Err.Error()) + "; ")
	}
	b.WriteString("expected " + e.Expected)
	if c := e.Presented; c != nil {
		names := append([]string(nil), c.DNSNames...)
		for _, ip := range c.IPAddresses {
			names = append(names, ip.String())
		}
		if len(names) == 0 {
			names = []string{c.Subject.CommonName}
		}
		fmt.Fprintf(&b, "; the server presented one for %s, issued by %q, valid %s to %s, SHA-256 %s",
			termsafe.String(strings.Join(names, ", ")), c.Issuer.String(), c.NotBefore.UTC().Format(time.DateOnly),
			c.NotAfter.UTC().Format(time.DateOnly), Fingerprint(c))
		b.WriteString(e.hint(names))
	}
	return b.String()
}

// hint says how to trust the presented certificate, if it is the
// server's: by its CA (ca_file), the name its provider documents (server
// or tls_server_name, never suggested from the certificate) or its
// fingerprint (tls_fingerprint, in the form that key takes); and to
// check that fingerprint by other means first, since a certificate an
// attacker presents is shown the same way.
func (e *CertificateError) hint(names []string) string {
	pin := fmt.Sprintf("tls_fingerprint = %q", Fingerprint(e.Presented))
	const check = ". Check that SHA-256 out of band first (ask the provider, or look on a network you trust): an attacker's certificate would be shown here the same way"
	var (
		hostErr x509.HostnameError
		caErr   x509.UnknownAuthorityError
	)
	switch {
	case e.Pinned:
		return ". If the server's certificate was changed (renewed), pin the new one with " + pin + check
	case errors.As(e.Err, &hostErr) && len(names) > 0 && names[0] != "":
		// No ready-made tls_server_name line: a certificate a public CA
		// issued for another name is what an attacker who owns that name
		// presents, so the name to trust comes from the provider.
		return ". A certificate for another name is also what an attacker's looks like: if the provider's own documentation gives one of those names for this server, set server (or tls_server_name) to it; or pin the certificate with " + pin + check
	case errors.As(e.Err, &caErr):
		return ". If this is the server's certificate, trust the CA that issued it with ca_file = \"<its PEM file>\", or pin the certificate with " + pin + check
	case e.Err != nil:
		return ". If this is the server's certificate, pin it with " + pin + check
	}
	return ""
}

func (e *CertificateError) Unwrap() error { return e.Err }

// NewTLSConfig returns the TLS configuration for server: TLS 1.2 or later
// (or o.MinVersion); the certificate verified for o.ServerName (default:
// server) against the system roots or o.CAFile, or pinned by
// o.Fingerprint. A refused certificate is a *CertificateError that says
// what was expected and what was presented.
func NewTLSConfig(server string, o TLSOptions) (*tls.Config, error) {
	return newTLSConfig(server, o, false)
}

// newTLSConfig is NewTLSConfig; with resume, the configuration keeps TLS
// sessions to resume (see TLSConfigs).
func newTLSConfig(server string, o TLSOptions, resume bool) (*tls.Config, error) {
	name := o.ServerName
	if name == "" {
		name = server
	}
	cfg := &tls.Config{ServerName: name, MinVersion: max(o.MinVersion, tls.VersionTLS12)}
	var roots *x509.CertPool
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificates in it", o.CAFile)
		}
	}
	if o.ClientCert != "" || o.ClientKey != "" {
		if o.ClientCert == "" || o.ClientKey == "" {
			return nil, errors.New("client_cert and client_key go together")
		}
		pair, err := tls.LoadX509KeyPair(o.ClientCert, o.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("client_cert/client_key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	var pin []byte
	if o.Fingerprint != "" {
		var err error
		if pin, err = ParseFingerprint(o.Fingerprint); err != nil {
			return nil, err
		}
	}
	// The verification below is crypto/tls's own (chain to the roots,
	// the name, the validity period), done in VerifyConnection so that
	// a refusal can say what the server presented; or, with a pin, the
	// fingerprint alone.
	cfg.InsecureSkipVerify = true
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(sessionsPerConfig)
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the server presented no certificate")
		}
		leaf := cs.PeerCertificates[0]
		if cs.DidResume && resume {
			// The session was made by a handshake that this function
			// verified: only this configuration (the server and
			// options of TLSConfigs' key) has its cache. What can
			// have changed since is the time, as crypto/tls checks
			// itself when it verifies.
			if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
				return &CertificateError{Expected: "a certificate valid now (this one was, when the resumed TLS session began)",
					Presented: leaf, Err: x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired}}
			}
			return nil
		}
		if pin != nil {
			sum := sha256.Sum256(leaf.Raw)
			if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
				return &CertificateError{Expected: "the certificate with SHA-256 " + hex.EncodeToString(pin) + " (tls_fingerprint)",
					Presented: leaf, Pinned: true}
			}
			return nil
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		// name, not cs.ServerName: that is the SNI sent, empty for an
		// IP address, and an empty DNSName would skip the name check.
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter})
		if err != nil {
			from := "a CA the system trusts"
			if o.CAFile != "" {
				from = "a CA in " + o.CAFile
			}
			return &CertificateError{Expected: fmt.Sprintf("a certificate for %q from %s", name, from),
				Presented: leaf, Err: err}
		}
		return nil
	}
	return cfg, nil
}

// sessionsPerConfig is how many TLS sessions a shared configuration keeps:
// they are filed under the server's name, which is one per configuration.
const sessionsPerConfig = 4

// TLSConfigs hands out TLS configurations shared by the accounts that
// have the same server and TLS options: one CA pool parsed once, and one
// cache of TLS sessions, so that a poll resumes the session an earlier
// poll of any of them made (RFC 8446 session tickets) instead of a full
// handshake with its certificate checks. A daemon keeps one for the
// accounts of one configuration; the zero value is ready to use.
//
// A session is resumed only by a configuration that verified it: the
// cache belongs to one server and one set of options, so an account
// with another CA, pin or client certificate has its own.
type TLSConfigs struct {
	mu sync.Mutex
	m  map[tlsKey]*tls.Config
}

type tlsKey struct {
	server string
	o      TLSOptions
}

// Get returns the shared configuration for server and o, made by
// NewTLSConfig the first time. Callers must not change it (Clone it).
func (c *TLSConfigs) Get(server string, o TLSOptions) (*tls.Config, error) {
	k := tlsKey{strings.ToLower(server), o}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cfg, ok := c.m[k]; ok {
		return cfg, nil
	}
	cfg, err := newTLSConfig(server, o, true)
	if err != nil {
		return nil, err
	}
	if c.m == nil {
		c.m = map[tlsKey]*tls.Config{}
	}
	c.m[k] = cfg
	return cfg, nil
}
