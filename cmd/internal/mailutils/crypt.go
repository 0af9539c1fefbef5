package mailutils

import (
	"crypto/rand"
	"crypto/sha512"
	"strconv"
	"strings"
)

// The passwords in a virtual domain's passwd file are crypt(3) hashes:
// pop3d's "generic" authentication compares crypt(password, hash) with the
// hash, so a plain password there never matches. SHA512Crypt makes the
// "$6$" hash glibc and libxcrypt understand (Ulrich Drepper's SHA-crypt
// specification), so that no external program is needed to add a user.

const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// sha512CryptDefaultRounds is the rounds a "$6$salt$" hash implies.
const sha512CryptDefaultRounds = 5000

// NewSalt returns 16 random characters of the crypt alphabet.
func NewSalt() string {
	b := make([]byte, 16)
	rand.Read(b)
	for i := range b {
		b[i] = cryptAlphabet[int(b[i])%len(cryptAlphabet)]
	}
	return string(b)
}

// SHA512Crypt returns crypt(3)'s "$6$" hash of password with salt (at most
// 16 characters are used) and the default 5000 rounds.
func SHA512Crypt(password, salt string) string {
	return sha512Crypt([]byte(password), salt, sha512CryptDefaultRounds, false)
}

func sha512Crypt(key []byte, salt string, rounds int, customRounds bool) string {
	if len(salt) > 16 {
		salt = salt[:16]
	}
	s := []byte(salt)

	// B = SHA512(key salt key).
	h := sha512.New()
	h.Write(key)
	h.Write(s)
	h.Write(key)
	b := h.Sum(nil)

	// A = SHA512(key salt B-for-each-key-byte, then key or B for each bit
	// of the key's length).
	h.Reset()
	h.Write(key)
	h.Write(s)
	n := len(key)
	for ; n > 64; n -= 64 {
		h.Write(b)
	}
	h.Write(b[:n])
	for n = len(key); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write(b)
		} else {
			h.Write(key)
		}
	}
	a := h.Sum(nil)

	// P: SHA512 of the key repeated len(key) times, stretched to len(key).
	h.Reset()
	for range len(key) {
		h.Write(key)
	}
	dp := h.Sum(nil)
	p := make([]byte, 0, len(key))
	for n = len(key); n > 64; n -= 64 {
		p = append(p, dp...)
	}
	p = append(p, dp[:n]...)

	// S: SHA512 of the salt repeated 16+A[0] times, cut to len(salt).
	h.Reset()
	for range 16 + int(a[0]) {
		h.Write(s)
	}
	ss := h.Sum(nil)[:len(s)]

	c := a
	for i := range rounds {
		h.Reset()
		if i&1 != 0 {
			h.Write(p)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(ss)
		}
		if i%7 != 0 {
			h.Write(p)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(p)
		}
		c = h.Sum(nil)
	}

	var out strings.Builder
	out.WriteString("$6$")
	if customRounds {
		out.WriteString("rounds=" + strconv.Itoa(rounds) + "$")
	}
	out.WriteString(salt)
	out.WriteByte('$')
	enc := func(b2, b1, b0 byte, chars int) {
		w := uint32(b2)<<16 | uint32(b1)<<8 | uint32(b0)
		for range chars {
			out.WriteByte(cryptAlphabet[w&0x3f])
			w >>= 6
		}
	}
	for i := range 21 {
		x, y, z := c[i], c[i+21], c[i+42]
		switch i % 3 {
		case 0:
			enc(x, y, z, 4)
		case 1:
			enc(y, z, x, 4)
		case 2:
			enc(z, x, y, 4)
		}
	}
	enc(0, 0, c[63], 2)
	return out.String()
}
