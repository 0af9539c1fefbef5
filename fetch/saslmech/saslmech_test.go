package saslmech

import (
	"strings"
	"testing"
)

// The exchanges of RFC 5802 section 5 and RFC 7677 section 3.
func TestSCRAMVectors(t *testing.T) {
	tests := []struct {
		mech, nonce, serverFirst, clientFinal, serverFinal string
	}{
		{SCRAMSHA1, "fyko+d2lbbFgONRv9qkxdawL",
			"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
			"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
			"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="},
		{SCRAMSHA256, "rOprNGfwEbeRWgbNEkqO",
			"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
			"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
			"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="},
	}
	for _, tt := range tests {
		t.Run(tt.mech, func(t *testing.T) {
			c, err := NewSCRAMClient(tt.mech, "user", "pencil")
			if err != nil {
				t.Fatal(err)
			}
			c.(*scram).nonce = tt.nonce
			mech, ir, err := c.Start()
			if err != nil || mech != tt.mech || string(ir) != "n,,n=user,r="+tt.nonce {
				t.Fatalf("Start = %q, %q, %v", mech, ir, err)
			}
			if err := c.(Verifier).Verify(); err == nil {
				t.Fatal("Verify before the server's final message succeeded")
			}
			resp, err := c.Next([]byte(tt.serverFirst))
			if err != nil || string(resp) != tt.clientFinal {
				t.Fatalf("client-final = %q, %v; want %q", resp, err, tt.clientFinal)
			}
			resp, err = c.Next([]byte(tt.serverFinal))
			if err != nil || len(resp) != 0 {
				t.Fatalf("after server-final: %q, %v", resp, err)
			}
			if err := c.(Verifier).Verify(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Next([]byte("x=y")); err == nil {
				t.Fatal("a fourth challenge was accepted")
			}
		})
	}
}

// A server that does not know the password cannot forge the final
// message, and malformed or hostile server messages are refused.
func TestSCRAMRefusals(t *testing.T) {
	const nonce = "rOprNGfwEbeRWgbNEkqO"
	good := "r=" + nonce + "xyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	tests := []struct {
		name, serverFirst, serverFinal, want string
	}{
		{"forged signature", good, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", "signature is wrong"},
		{"signature not base64", good, "v=***", "signature is wrong"},
		{"error in final", good, "e=invalid-proof", "refused: invalid-proof"},
		{"no v in final", good, "x=1", "signature is wrong"},
		{"nonce not ours", "r=other,s=QSXCR+Q6sek8bf92,i=4096", "", "nonce"},
		{"nonce not extended", "r=" + nonce + ",s=QSXCR+Q6sek8bf92,i=4096", "", "nonce"},
		{"no salt", "r=" + nonce + "x,i=4096", "", "salt"},
		{"salt not base64", "r=" + nonce + "x,s=!!,i=4096", "", "salt"},
		{"no iterations", "r=" + nonce + "x,s=QSXCR+Q6sek8bf92", "", "iteration"},
		{"zero iterations", "r=" + nonce + "x,s=QSXCR+Q6sek8bf92,i=0", "", "iteration"},
		{"too many iterations", "r=" + nonce + "x,s=QSXCR+Q6sek8bf92,i=999999999", "", "more than"},
		{"mandatory extension", "m=ext,r=" + nonce + "x,s=QSXCR+Q6sek8bf92,i=4096", "", "extension"},
		{"error in first", "e=unknown-user", "", "refused: unknown-user"},
		{"garbage", "hello", "", "malformed"},
		{"empty", "", "", "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := NewSCRAMClient(SCRAMSHA256, "user", "pencil")
			c.(*scram).nonce = nonce
			c.Start()
			_, err := c.Next([]byte(tt.serverFirst))
			if err == nil && tt.serverFinal != "" {
				_, err = c.Next([]byte(tt.serverFinal))
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "pencil") {
				t.Fatalf("the error holds the password: %v", err)
			}
			if c.(Verifier).Verify() == nil {
				t.Fatal("verified after a refusal")
			}
		})
	}
}

func TestSCRAMNames(t *testing.T) {
	if _, err := NewSCRAMClient("SCRAM-MD5", "u", "p"); err == nil {
		t.Fatal("an unknown SCRAM variant was accepted")
	}
	c, _ := NewSCRAMClient(SCRAMSHA1, "a=b,c", "p")
	_, ir, _ := c.Start()
	if !strings.HasPrefix(string(ir), "n,,n=a=3Db=2Cc,r=") {
		t.Fatalf("client-first = %q", ir)
	}
	// Two clients never share a nonce.
	c2, _ := NewSCRAMClient(SCRAMSHA1, "a=b,c", "p")
	_, ir2, _ := c2.Start()
	if string(ir) == string(ir2) {
		t.Fatal("two clients sent the same nonce")
	}
}

// RFC 2195 section 2.
func TestCRAMMD5(t *testing.T) {
	c := NewCRAMMD5Client("tim", "tanstaaftanstaaf")
	mech, ir, err := c.Start()
	if mech != CRAMMD5 || ir != nil || err != nil {
		t.Fatalf("Start = %q, %q, %v", mech, ir, err)
	}
	resp, err := c.Next([]byte("<1896.697170952@postoffice.reston.mci.net>"))
	if err != nil || string(resp) != "tim b913a602c7eda7a495b4e6e7334d3890" {
		t.Fatalf("response = %q, %v", resp, err)
	}
	if _, err := c.Next([]byte("again")); err == nil {
		t.Fatal("a second challenge was answered")
	}
	if _, err := NewCRAMMD5Client("tim", "x").Next(nil); err == nil {
		t.Fatal("an empty challenge was answered")
	}
}

func TestXOAuth2(t *testing.T) {
	c := NewXOAuth2Client("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
	mech, ir, err := c.Start()
	// The example of Google's XOAUTH2 documentation, before base64.
	want := "user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
	if mech != XOAuth2 || string(ir) != want || err != nil {
		t.Fatalf("Start = %q, %q, %v", mech, ir, err)
	}
	// The error challenge is answered with an empty response, as Google
	// documents, and kept; a second challenge ends the exchange.
	resp, err := c.Next([]byte(`{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}`))
	refused := c.(refusal).Refused()
	if resp == nil || len(resp) != 0 || err != nil || refused == nil ||
		!strings.Contains(refused.Error(), "status 401") || !strings.Contains(refused.Error(), "scope https://mail.google.com/") {
		t.Fatalf("error challenge: %q, %v; refused %v", resp, err, refused)
	}
	if _, err := c.Next([]byte("again")); err == nil {
		t.Fatal("a second challenge was answered")
	}
	c = NewXOAuth2Client("u", "t")
	c.Next([]byte("not json \x01\x02"))
	if err := c.(refusal).Refused(); err == nil || strings.ContainsAny(err.Error(), "\x01\x02") {
		t.Fatalf("garbage challenge: %v", err)
	}
}

func TestOAuthBearer(t *testing.T) {
	c := NewOAuthBearerClient("u@example.com", "tok", "pop.example.com", 995)
	mech, ir, err := c.Start()
	want := "n,a=u@example.com,\x01host=pop.example.com\x01port=995\x01auth=Bearer tok\x01\x01"
	if mech != "OAUTHBEARER" || string(ir) != want || err != nil {
		t.Fatalf("Start = %q, %q, %v", mech, ir, err)
	}
	// Found by FuzzSASLChallenge: the server's status must not reach a
	// log line with its control characters.
	resp, err := c.Next([]byte("{\"status\":\"\\n}4\\u0000\"}"))
	refused := c.(refusal).Refused()
	if string(resp) != "\x01" || err != nil || refused == nil ||
		strings.ContainsAny(refused.Error(), "\n\x00") || !strings.Contains(refused.Error(), `status \x0a}4\x00`) {
		t.Fatalf("error challenge: %q, %v; refused %q", resp, err, refused)
	}
	if _, err := c.Next([]byte(`{"status":"invalid_token"}`)); err == nil {
		t.Fatal("a second challenge was answered")
	}
}

// refusal is pop3.Refusal, which the OAuth mechanisms implement.
type refusal interface{ Refused() error }

// A cached salted password serves the next login with the same password,
// salt and count, and is kept only after the server proved itself.
func TestSCRAMSaltedPasswordCache(t *testing.T) {
	const (
		nonce       = "rOprNGfwEbeRWgbNEkqO"
		serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
		clientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
		serverFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
	)
	var cache SaltedPasswords
	login := func(password, final string) (string, error) {
		t.Helper()
		c, err := NewSCRAMClientCached(SCRAMSHA256, "user", password, &cache)
		if err != nil {
			t.Fatal(err)
		}
		c.(*scram).nonce = nonce
		c.Start()
		resp, err := c.Next([]byte(serverFirst))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Next([]byte(final))
		return string(resp), err
	}
	if _, err := login("pencil", "v=AAAA"); err == nil || cache.salted != nil {
		t.Fatalf("a forged server signature: %v; cached %x", err, cache.salted)
	}
	if resp, err := login("pencil", serverFinal); err != nil || resp != clientFinal || cache.salted == nil {
		t.Fatalf("first login: %q, %v; cached %x", resp, err, cache.salted)
	}
	if resp, err := login("pencil", serverFinal); err != nil || resp != clientFinal {
		t.Fatalf("login from the cache: %q, %v", resp, err)
	}
	saved := cache.salted
	cache.salted = make([]byte, len(saved)) // proves the next login reads the cache
	if resp, _ := login("pencil", serverFinal); resp == clientFinal {
		t.Fatal("the second login did not use the cached salted password")
	}
	cache.salted = saved
	if resp, _ := login("pen", serverFinal); resp == clientFinal {
		t.Fatal("another password got the cached salted password")
	}
}
