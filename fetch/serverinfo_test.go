package fetch

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// TestServerInfoStalledServer: a server that stops answering holds
// serverinfo no longer than the account's timeout.
func TestServerInfoStalledServer(t *testing.T) {
	f := newFixture(t, pop3test.Config{}, nil)
	f.acct.Timeout = time.Second
	f.srv.SetFaults(pop3test.Fault{Command: "CAPA", Action: pop3test.Stall, Delay: time.Minute})
	start := time.Now()
	info, err := GetServerInfo(context.Background(), f.acct, ServerInfoOptions{})
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindNetwork {
		t.Fatalf("err %v, want a network error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if info == nil || info.Greeting == "" {
		t.Errorf("what was learned before the stall is lost: %+v", info)
	}
}

// TestServerInfoNoClientCertForUnverified: a client certificate is not
// presented to a server whose certificate failed the checks; a verified
// one gets it.
func TestServerInfoNoClientCertForUnverified(t *testing.T) {
	srvCert, err := pop3test.NewCert(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	client, err := pop3test.NewClientCert(time.Hour, "alice")
	if err != nil {
		t.Fatal(err)
	}
	var presented []int
	scfg := srvCert.ServerConfig()
	scfg.ClientAuth = tls.RequestClientCert
	scfg.VerifyConnection = func(cs tls.ConnectionState) error {
		presented = append(presented, len(cs.PeerCertificates))
		return nil
	}
	f := newFixture(t, pop3test.Config{TLS: scfg}, nil)
	f.acct.TLS = TLSImplicit
	pair, err := tls.X509KeyPair(client.CertPEM, client.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		opts     TLSOptions
		verified bool
	}{
		{"unverified", TLSOptions{}, false},
		{"pinned", TLSOptions{Fingerprint: Fingerprint(srvCert.Leaf())}, true},
	} {
		cfg, err := NewTLSConfig(f.acct.Server, tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
		f.acct.TLSConfig = cfg
		presented = nil
		info, err := GetServerInfo(context.Background(), f.acct, ServerInfoOptions{})
		if (err == nil) != tc.verified || !errors.Is(err, ErrUnverified) != tc.verified {
			t.Errorf("%s: err %v", tc.name, err)
		}
		if info == nil || info.TLS == nil || info.TLS.Verified != tc.verified || len(info.TLS.Chain) != 1 {
			t.Fatalf("%s: %+v", tc.name, info)
		}
		want := 0
		if tc.verified {
			want = 1
		}
		if len(presented) != 1 || presented[0] != want {
			t.Errorf("%s: the server saw client certificates %v, want [%d]", tc.name, presented, want)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want Policy
		ok   bool
	}{
		{nil, Policy{}, false},
		{[]string{"0"}, Policy{Value: "0", Number: 0}, true},
		{[]string{"NEVER"}, Policy{Value: "NEVER", Number: -1}, true},
		{[]string{"30", "USER"}, Policy{Value: "30", Number: 30, PerUser: true}, true},
		{[]string{"-5"}, Policy{Value: "-5", Number: -1}, true},
		{[]string{"99999999999999999999"}, Policy{Value: "99999999999999999999", Number: -1}, true},
	} {
		got, ok := ParsePolicy(tc.args)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: %+v %v, want %+v %v", tc.args, got, ok, tc.want, tc.ok)
		}
	}
}
