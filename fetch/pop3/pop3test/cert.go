package pop3test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Cert is a self-signed certificate for tests, valid for the given host
// names and IP addresses.
type Cert struct {
	CertPEM []byte // the certificate, PEM encoded
	KeyPEM  []byte // its private key, PEM encoded (PKCS #8)
	tls     tls.Certificate
	leaf    *x509.Certificate
}

// NewCert makes a self-signed certificate for hosts, each a DNS name or an
// IP address, valid from an hour ago for notAfter.
func NewCert(notAfter time.Duration, hosts ...string) (*Cert, error) {
	return newCert(notAfter, "popfetch test", x509.ExtKeyUsageServerAuth, hosts)
}

// NewClientCert makes a self-signed client certificate whose subject's
// common name is commonName (a server that logs in by certificate takes
// its user name from it), valid from an hour ago for notAfter.
func NewClientCert(notAfter time.Duration, commonName string) (*Cert, error) {
	return newCert(notAfter, commonName, x509.ExtKeyUsageClientAuth, nil)
}

func newCert(notAfter time.Duration, commonName string, usage x509.ExtKeyUsage, hosts []string) (*Cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(notAfter),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pop3test: create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	c := &Cert{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	if c.tls, err = tls.X509KeyPair(c.CertPEM, c.KeyPEM); err != nil {
		return nil, err
	}
	if c.leaf, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	return c, nil
}

// Leaf returns the parsed certificate.
func (c *Cert) Leaf() *x509.Certificate { return c.leaf }

// ServerConfig returns a TLS configuration for a server presenting c.
func (c *Cert) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.tls}, MinVersion: tls.VersionTLS12}
}

// Pool returns a certificate pool that trusts c.
func (c *Cert) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.leaf)
	return p
}

// ClientConfig returns a TLS configuration for a client that trusts c and
// verifies the name serverName.
func (c *Cert) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: c.Pool(), ServerName: serverName, MinVersion: tls.VersionTLS12}
}
