package pop3test

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
	"time"
)

// maxAuthLine is RFC 5034's limit on an AUTH command with its initial
// response, CRLF included. Like Microsoft 365, the server refuses longer
// lines.
const maxAuthLine = 255

// auth runs a SASL exchange (RFC 5034) for AUTH arg.
func (ss *session) auth(arg string) error {
	cfg := &ss.srv.cfg
	if arg == "" {
		// "AUTH" alone lists the mechanisms (a common extension).
		ss.line("+OK")
		for _, m := range cfg.SASL {
			ss.line(m)
		}
		return ss.line(".")
	}
	if len("AUTH "+arg)+2 > maxAuthLine {
		return ss.errf("AUTH line too long")
	}
	mech, ir, hasIR := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	offered := false
	for _, m := range cfg.SASL {
		offered = offered || strings.EqualFold(m, mech)
	}
	if !offered {
		return ss.errf("Unsupported authentication mechanism.")
	}
	var initial []byte
	if hasIR {
		if ir != "=" {
			b, err := base64.StdEncoding.DecodeString(ir)
			if err != nil {
				return ss.errf("Invalid base64 data in initial response")
			}
			initial = b
		} else {
			initial = []byte{}
		}
	}
	// respond returns the client's next response, asking with challenge
	// if there is no initial response left.
	respond := func(challenge string) ([]byte, bool, error) {
		if initial != nil {
			r := initial
			initial = nil
			return r, true, nil
		}
		if challenge == "" {
			ss.line("+ ")
		} else {
			ss.line("+ " + base64.StdEncoding.EncodeToString([]byte(challenge)))
		}
		if err := ss.w.Flush(); err != nil {
			return nil, false, err
		}
		ss.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := ss.r.ReadString('\n')
		if err != nil {
			return nil, false, errHangUp
		}
		line = strings.TrimRight(line, "\r\n")
		ss.srv.mu.Lock()
		ss.srv.commands = append(ss.srv.commands, line)
		ss.srv.mu.Unlock()
		if line == "*" {
			return nil, false, nil
		}
		b, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, false, nil
		}
		return b, true, nil
	}
	fail := func() error { return ss.errf("[AUTH] Authentication failed.") }
	user, ok, err := ss.saslExchange(mech, respond)
	if err != nil {
		return err
	}
	if !ok || user != cfg.User {
		return fail()
	}
	ss.user = user
	ss.srv.mu.Lock()
	ss.srv.mechanisms = append(ss.srv.mechanisms, mech)
	ss.srv.mu.Unlock()
	return ss.login()
}

// saslExchange runs mechanism mech and returns the authenticated user.
func (ss *session) saslExchange(mech string, respond func(string) ([]byte, bool, error)) (string, bool, error) {
	cfg := &ss.srv.cfg
	switch mech {
	case "PLAIN":
		r, ok, err := respond("")
		if !ok {
			return "", false, err
		}
		f := strings.Split(string(r), "\x00")
		if len(f) != 3 || (f[0] != "" && f[0] != f[1]) || f[2] != cfg.Password {
			return "", false, nil
		}
		return f[1], true, nil
	case "LOGIN":
		u, ok, err := respond("Username:")
		if !ok {
			return "", false, err
		}
		p, ok, err := respond("Password:")
		if !ok {
			return "", false, err
		}
		return string(u), string(p) == cfg.Password, nil
	case "CRAM-MD5":
		ch := fmt.Sprintf("<%d.%d@pop3test>", time.Now().UnixNano(), ss.srv.Sessions())
		r, ok, err := respond(ch)
		if !ok {
			return "", false, err
		}
		user, digest, _ := strings.Cut(string(r), " ")
		m := hmac.New(md5.New, []byte(cfg.Password))
		m.Write([]byte(ch))
		return user, digest == hex.EncodeToString(m.Sum(nil)), nil
	case "SCRAM-SHA-1":
		return ss.scram(sha1.New, respond)
	case "SCRAM-SHA-256":
		return ss.scram(sha256.New, respond)
	case "XOAUTH2":
		r, ok, err := respond("")
		if !ok {
			return "", false, err
		}
		var user, token string
		for _, kv := range strings.Split(string(r), "\x01") {
			if v, ok := strings.CutPrefix(kv, "user="); ok {
				user = v
			}
			if v, ok := strings.CutPrefix(kv, "auth=Bearer "); ok {
				token = v
			}
		}
		if token != cfg.Token || cfg.Token == "" {
			// Google's way: a JSON error as a challenge, then -ERR
			// after the client's empty response or "*".
			respond(`{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}`)
			return "", false, nil
		}
		return user, true, nil
	case "OAUTHBEARER":
		r, ok, err := respond("")
		if !ok {
			return "", false, err
		}
		gs2, rest, _ := strings.Cut(string(r), "\x01")
		user := ""
		for _, f := range strings.Split(gs2, ",") {
			if v, ok := strings.CutPrefix(f, "a="); ok {
				user = v
			}
		}
		token := ""
		for _, kv := range strings.Split(rest, "\x01") {
			if v, ok := strings.CutPrefix(kv, "auth=Bearer "); ok {
				token = v
			}
		}
		if token != cfg.Token || cfg.Token == "" {
			respond(`{"status":"invalid_token","scope":"pop"}`)
			return "", false, nil
		}
		if user == "" {
			user = cfg.User
		}
		return user, true, nil
	case "EXTERNAL":
		r, ok, err := respond("")
		if !ok {
			return "", false, err
		}
		tc, isTLS := ss.conn.(*tls.Conn)
		if !isTLS || len(tc.ConnectionState().PeerCertificates) == 0 {
			return "", false, nil
		}
		if len(r) == 0 {
			return cfg.User, true, nil
		}
		return string(r), true, nil
	}
	return "", false, nil
}

// scram is the server side of SCRAM (RFC 5802) without channel binding.
func (ss *session) scram(newHash func() hash.Hash, respond func(string) ([]byte, bool, error)) (string, bool, error) {
	cfg := &ss.srv.cfg
	first, ok, err := respond("")
	if !ok {
		return "", false, err
	}
	bare, found := strings.CutPrefix(string(first), "n,,")
	if !found {
		return "", false, nil
	}
	var user, cnonce string
	for _, f := range strings.Split(bare, ",") {
		if v, ok := strings.CutPrefix(f, "n="); ok {
			user = strings.NewReplacer("=2C", ",", "=3D", "=").Replace(v)
		}
		if v, ok := strings.CutPrefix(f, "r="); ok {
			cnonce = v
		}
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	snonce := make([]byte, 18)
	rand.Read(snonce)
	nonce := cnonce + base64.RawStdEncoding.EncodeToString(snonce)
	serverFirst := "r=" + nonce + ",s=" + base64.StdEncoding.EncodeToString(salt) + ",i=4096"
	final, ok, err := respond(serverFirst)
	if !ok {
		return "", false, err
	}
	withoutProof, proofB64, _ := strings.Cut(string(final), ",p=")
	if withoutProof != "c=biws,r="+nonce {
		return "", false, nil
	}
	mac := func(key []byte, s string) []byte {
		m := hmac.New(newHash, key)
		m.Write([]byte(s))
		return m.Sum(nil)
	}
	salted, _ := pbkdf2.Key(newHash, cfg.Password, salt, 4096, newHash().Size())
	clientKey := mac(salted, "Client Key")
	h := newHash()
	h.Write(clientKey)
	authMessage := bare + "," + serverFirst + "," + withoutProof
	want := mac(h.Sum(nil), authMessage)
	for i := range want {
		want[i] ^= clientKey[i]
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil || !hmac.Equal(proof, want) {
		return "", false, nil
	}
	serverFinal := "v=" + base64.StdEncoding.EncodeToString(mac(mac(salted, "Server Key"), authMessage))
	if cfg.ForgeSCRAM {
		serverFinal = "v=" + base64.StdEncoding.EncodeToString(make([]byte, newHash().Size()))
	}
	if _, ok, err := respond(serverFinal); !ok {
		return "", false, err
	}
	return user, true, nil
}
