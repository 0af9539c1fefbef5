package saslmech

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"
)

// MaxSCRAMIterations bounds the PBKDF2 iteration count a server may ask
// for. The count is the server's to choose; a larger one would let a
// hostile server keep the client busy for minutes. RFC 7677 asks for at
// least 4096; servers use 4096 to a few hundred thousand.
const MaxSCRAMIterations = 1 << 20

// scram is a SCRAM client (RFC 5802) without channel binding.
type scram struct {
	mech     string
	newHash  func() hash.Hash
	user     string
	password string

	salted *SaltedPasswords // nil: no cache

	step        int
	nonce       string // the client's part of the nonce
	clientFirst string // client-first-message-bare
	serverSig   []byte // the ServerSignature the server must prove
	verified    bool
	pending     func() // caches the salted password, once the server has proved itself
}

// SaltedPasswords keeps the salted password of a SCRAM login (RFC 5802
// section 5.1 lets a client cache it) for the next login with the same
// mechanism, password, salt and iteration count: the server's salt and
// count stay the same between logins, and PBKDF2 with thousands of
// iterations is most of the CPU a daemon spends on a poll. It keeps one,
// under a SHA-256 of what it depends on, not the password itself; the
// salted password is kept only after the server proved it knows it too.
// The zero value is ready to use; a nil *SaltedPasswords keeps nothing.
type SaltedPasswords struct {
	mu     sync.Mutex
	forKey [sha256.Size]byte
	salted []byte
}

func (c *SaltedPasswords) key(mech, password string, salt []byte, iter int) [sha256.Size]byte {
	if c == nil {
		return [sha256.Size]byte{}
	}
	h := sha256.New()
	for _, part := range [][]byte{[]byte(mech), []byte(password), salt, []byte(strconv.Itoa(iter))} {
		h.Write([]byte(strconv.Itoa(len(part)) + ":"))
		h.Write(part)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func (c *SaltedPasswords) get(k [sha256.Size]byte) []byte {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.salted == nil || subtle.ConstantTimeCompare(c.forKey[:], k[:]) != 1 {
		return nil
	}
	return c.salted
}

func (c *SaltedPasswords) put(k [sha256.Size]byte, salted []byte) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forKey, c.salted = k, salted
}

// NewSCRAMClient returns a SCRAM client for mech, SCRAMSHA256 or SCRAMSHA1.
// SCRAM sends neither the password nor anything a listener could replay,
// and the server proves in its last message that it knows the password
// too. The password is used as given (no SASLprep normalisation), as most
// servers store it.
func NewSCRAMClient(mech, user, password string) (sasl.Client, error) {
	return NewSCRAMClientCached(mech, user, password, nil)
}

// NewSCRAMClientCached is NewSCRAMClient with a cache of the salted
// password, which spares a repeated login the PBKDF2 computation; nil
// caches nothing.
func NewSCRAMClientCached(mech, user, password string, cache *SaltedPasswords) (sasl.Client, error) {
	var h func() hash.Hash
	switch mech {
	case SCRAMSHA256:
		h = sha256.New
	case SCRAMSHA1:
		h = sha1.New
	default:
		return nil, fmt.Errorf("saslmech: %s is not a SCRAM mechanism", mech)
	}
	return &scram{mech: mech, newHash: h, user: user, password: password, salted: cache}, nil
}

// gs2Header says: no channel binding, no authorization identity.
const gs2Header = "n,,"

func (s *scram) Start() (string, []byte, error) {
	if s.nonce == "" {
		b := make([]byte, 24)
		rand.Read(b)
		s.nonce = base64.RawStdEncoding.EncodeToString(b)
	}
	s.clientFirst = "n=" + saslName(s.user) + ",r=" + s.nonce
	s.step = 1
	return s.mech, []byte(gs2Header + s.clientFirst), nil
}

func (s *scram) Next(challenge []byte) ([]byte, error) {
	switch s.step {
	case 1:
		s.step = 2
		return s.clientFinal(challenge)
	case 2:
		s.step = 3
		return nil, s.checkServerFinal(challenge)
	}
	return nil, sasl.ErrUnexpectedServerChallenge
}

// clientFinal answers the server-first-message with the proof.
func (s *scram) clientFinal(serverFirst []byte) ([]byte, error) {
	attrs, err := parseAttrs(serverFirst)
	if err != nil {
		return nil, err
	}
	if _, ok := attrs['m']; ok {
		return nil, fmt.Errorf("%s: the server requires an extension we do not know", s.mech)
	}
	if e, ok := attrs['e']; ok {
		return nil, fmt.Errorf("%s: the server refused: %s", s.mech, clean(e))
	}
	nonce := attrs['r']
	if !strings.HasPrefix(nonce, s.nonce) || len(nonce) == len(s.nonce) {
		return nil, fmt.Errorf("%s: the server's nonce does not extend ours", s.mech)
	}
	salt, err := base64.StdEncoding.DecodeString(attrs['s'])
	if err != nil || len(salt) == 0 {
		return nil, fmt.Errorf("%s: the server sent no valid salt", s.mech)
	}
	iter, err := strconv.Atoi(attrs['i'])
	if err != nil || iter < 1 {
		return nil, fmt.Errorf("%s: the server sent no valid iteration count", s.mech)
	}
	if iter > MaxSCRAMIterations {
		return nil, fmt.Errorf("%s: the server asks for %d iterations, more than the %d we allow", s.mech, iter, MaxSCRAMIterations)
	}
	key := s.salted.key(s.mech, s.password, salt, iter)
	salted := s.salted.get(key)
	if salted == nil {
		if salted, err = pbkdf2.Key(s.newHash, s.password, salt, iter, s.newHash().Size()); err != nil {
			return nil, fmt.Errorf("%s: %w", s.mech, err)
		}
	}
	// Kept only once the server proves it knows the same (see Verify).
	s.pending = func() { s.salted.put(key, salted) }
	clientKey := s.hmac(salted, []byte("Client Key"))
	storedKey := s.sum(clientKey)
	withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte(gs2Header)) + ",r=" + nonce
	authMessage := []byte(s.clientFirst + "," + string(serverFirst) + "," + withoutProof)
	proof := s.hmac(storedKey, authMessage)
	subtle.XORBytes(proof, proof, clientKey)
	s.serverSig = s.hmac(s.hmac(salted, []byte("Server Key")), authMessage)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// checkServerFinal checks the server-final-message. The empty response
// that follows it is what the protocol client sends back.
func (s *scram) checkServerFinal(serverFinal []byte) error {
	attrs, err := parseAttrs(serverFinal)
	if err != nil {
		return err
	}
	if e, ok := attrs['e']; ok {
		return fmt.Errorf("%s: the server refused: %s", s.mech, clean(e))
	}
	v, err := base64.StdEncoding.DecodeString(attrs['v'])
	if err != nil || !hmac.Equal(v, s.serverSig) {
		return fmt.Errorf("%s: the server's signature is wrong: it does not know the password (a man in the middle?)", s.mech)
	}
	s.verified = true
	if s.pending != nil {
		s.pending()
	}
	return nil
}

// Verify reports whether the server proved it knows the password.
func (s *scram) Verify() error {
	if !s.verified {
		return fmt.Errorf("%s: the server reported success without proving it knows the password", s.mech)
	}
	return nil
}

func (s *scram) hmac(key, data []byte) []byte {
	m := hmac.New(s.newHash, key)
	m.Write(data)
	return m.Sum(nil)
}

func (s *scram) sum(data []byte) []byte {
	h := s.newHash()
	h.Write(data)
	return h.Sum(nil)
}

// saslName escapes a user name for SCRAM (RFC 5802 section 5.1).
func saslName(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

// parseAttrs splits a SCRAM message into its one-letter attributes.
func parseAttrs(msg []byte) (map[byte]string, error) {
	if len(msg) == 0 || len(msg) > 4096 {
		return nil, errors.New("SCRAM: malformed server message")
	}
	attrs := map[byte]string{}
	for _, f := range bytes.Split(msg, []byte(",")) {
		if len(f) < 2 || f[1] != '=' {
			return nil, errors.New("SCRAM: malformed server message")
		}
		if _, dup := attrs[f[0]]; !dup {
			attrs[f[0]] = string(f[2:])
		}
	}
	return attrs, nil
}
