package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"

	"github.com/popfetch/popfetch/fetch/saslmech"
)

// refUnstuff is a plain reference for the dot reader: split into lines,
// stop at ".", drop one leading dot, CRLF -> LF. ok is false if the
// terminating line is missing.
func refUnstuff(in []byte) (out []byte, ok bool) {
	for len(in) > 0 {
		i := bytes.IndexByte(in, '\n')
		if i < 0 {
			return out, false
		}
		line := in[:i]
		in = in[i+1:]
		line = bytes.TrimSuffix(line, []byte("\r"))
		if string(line) == "." {
			return out, true
		}
		line = bytes.TrimPrefix(line, []byte("."))
		out = append(out, line...)
		out = append(out, '\n')
	}
	return out, false
}

func FuzzDotReader(f *testing.F) {
	for _, seed := range []string{
		".\r\n", "a\r\n.\r\n", "..x\r\n..\r\n.\r\n", "a\rb\r\n.\r\n", "no terminator\r\n", "x",
		".\n", "a\nb\n.\n", strings.Repeat("y", 5000) + "\r\n.\r\n", "\r\n\r\n.\r\n", ".x\r\n.",
	} {
		f.Add([]byte(seed), uint16(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint16) {
		// A small buffer exercises the long-line paths.
		r := newDotReader(bufio.NewReaderSize(bytes.NewReader(in), 16))
		n := int(chunk%64) + 1
		var got []byte
		buf := make([]byte, n)
		var err error
		for {
			var m int
			m, err = r.Read(buf)
			got = append(got, buf[:m]...)
			if err != nil {
				break
			}
		}
		want, ok := refUnstuff(in)
		if ok {
			if err != io.EOF {
				t.Fatalf("complete input %q: error %v", in, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("input %q: got %q, want %q", in, got, want)
			}
		} else if !errors.Is(err, ErrTruncated) {
			t.Fatalf("truncated input %q: error %v, want ErrTruncated", in, err)
		}
		if r.n != int64(len(got)) {
			t.Fatalf("count %d, returned %d", r.n, len(got))
		}
	})
}

func FuzzStatusLine(f *testing.F) {
	for _, seed := range []string{"+OK", "+OK hi", "-ERR [IN-USE] x", "-ERR [SYS/TEMP", "+OKAY", "", "-err [] x", "+ok\x00"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		ok, text, err := parseStatus(line)
		if err != nil {
			return
		}
		if !ok {
			code, rest := splitCode(text)
			if strings.Contains(code, "]") || len(code)+len(rest) > len(text) {
				t.Fatalf("splitCode(%q) = %q, %q", text, code, rest)
			}
			_ = (&Error{Code: code, Text: rest}).Temporary()
		}
		// Whatever parses must round-trip through a client.
		r := bufio.NewReader(strings.NewReader(line + "\r\n"))
		if _, err := readBoundedLine(r, MaxLineLength, "fuzz"); err != nil && len(line)+2 <= MaxLineLength && !strings.ContainsAny(line, "\r\n") {
			t.Fatalf("readBoundedLine(%q): %v", line, err)
		}
	})
}

func FuzzListings(f *testing.F) {
	for _, seed := range []string{"1 abc", "2 200", " 3  uid with spaces ", "0 x", "-1 x", "1", "99999999999999999999 x", "1 \xff\xfe"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if m, err := parseUIDLLine(line); err == nil && (m.Number <= 0 || m.UID == "") {
			t.Fatalf("parseUIDLLine(%q) = %+v", line, m)
		}
		if m, err := parseListLine(line); err == nil && (m.Number <= 0 || m.Size < 0) {
			t.Fatalf("parseListLine(%q) = %+v", line, m)
		}
		// As a CAPA line, through the parser Capa uses (the test once
		// upper-cased with strings.ToUpper, which the parser stopped
		// using; the corpus kept an input that caught it).
		caps := Capabilities{}
		caps.add(line)
		if f := strings.Fields(line); len(f) > 0 {
			lower := []byte(f[0])
			for i, c := range lower {
				if 'A' <= c && c <= 'Z' {
					lower[i] = c + 'a' - 'A'
				}
			}
			if !caps.Has(f[0]) || !caps.Has(string(lower)) {
				t.Fatalf("Has(%q) false", f[0])
			}
		}
	})
}

// FuzzCapa feeds a whole CAPA response body, as a server would send it,
// through the bounded line reader and the capability parser.
func FuzzCapa(f *testing.F) {
	for _, seed := range []string{
		"TOP\r\nUIDL\r\nSASL PLAIN SCRAM-SHA-256\r\n.\r\n",
		"USER\r\nSTLS\r\nLOGIN-DELAY 900\r\nPIPELINING\r\nUTF8 USER\r\n.\r\n",
		"sasl plain  login\r\n\r\n   \r\n.\r\n",
		"IMPLEMENTATION " + strings.Repeat("x", 600) + "\r\n.\r\n",
		"SASL\r\n..\r\n.\r\n", "no end\r\n", "\x00\xff\r\n.\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(in), 16)
		caps := Capabilities{}
		for lines := 0; ; lines++ {
			line, err := readBoundedLine(r, MaxLineLength, "CAPA")
			if err != nil {
				if len(line) > MaxLineLength {
					t.Fatalf("line of %d octets accepted", len(line))
				}
				break
			}
			if line == "." {
				break
			}
			if lines > len(in) {
				t.Fatal("more lines than input octets")
			}
			caps.add(strings.TrimPrefix(line, "."))
		}
		for name, args := range caps {
			if name != asciiUpper(name) || !caps.Has(name) || (isASCII(name) && !caps.Has(strings.ToLower(name))) {
				t.Fatalf("capability %q not found by Has", name)
			}
			_ = args
		}
		for _, m := range caps.SASLMechanisms() {
			if m == "" || strings.ContainsAny(m, " \r\n") {
				t.Fatalf("mechanism %q", m)
			}
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// FuzzSASLChallenge decodes a challenge line as the client reads it and
// hands the result to each mechanism that parses challenges: no panic,
// and nothing but short, printable errors.
func FuzzSASLChallenge(f *testing.F) {
	for _, seed := range []string{
		"+", "+ ", "+ " + b64("r=abcdefDEF,s=QSXCR+Q6sek8bf92,i=4096"), "+ " + b64("v=rmF9pqV8S7suAoZWja4dJRkFsKQ="),
		"+ " + b64(`{"status":"invalid_token","scope":"x"}`), "+ " + b64("<1.2@host>"), "+ " + b64("Password:"),
		"+ " + b64("e=other-error"), "+ " + b64("m=x,r=abc"), "+ " + b64("r=abcdef,s=,i=-1"), "+ ===", "+x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		ch, err := decodeChallenge(line)
		if err != nil {
			return
		}
		mechs := []sasl.Client{
			saslmech.NewCRAMMD5Client("u", "p"),
			saslmech.NewXOAuth2Client("u", "tok"),
			saslmech.NewOAuthBearerClient("u", "tok", "host", 995),
			sasl.NewLoginClient("u", "p"),
		}
		for _, name := range []string{saslmech.SCRAMSHA1, saslmech.SCRAMSHA256} {
			c, _ := saslmech.NewSCRAMClient(name, "u", "p")
			mechs = append(mechs, c)
		}
		for _, m := range mechs {
			m.Start()
			// Two rounds: SCRAM's second message is checked against the
			// first. The fuzzed challenge starts with the client's nonce
			// rarely, so also try it as the final message.
			for range 2 {
				if _, err := m.Next(ch); err != nil {
					if len(err.Error()) > 400 || strings.ContainsAny(err.Error(), "\x00\r\n") {
						t.Fatalf("%T: error %q", m, err)
					}
					break
				}
			}
			if v, ok := m.(Verifier); ok && v.Verify() == nil {
				t.Fatalf("%T verified a fuzzed server", m)
			}
			if r, ok := m.(Refusal); ok && r.Refused() != nil {
				if msg := r.Refused().Error(); len(msg) > 400 || strings.ContainsAny(msg, "\x00\r\n") {
					t.Fatalf("%T: refusal %q", m, msg)
				}
			}
		}
	})
}

// FuzzGreeting: the APOP timestamp taken from a greeting is either
// nothing or a <local@domain> of printable ASCII (CVE-2007-1558).
func FuzzGreeting(f *testing.F) {
	for _, s := range []string{"+OK <1.2@x>", "+OK <a@b@c>", "+OK <@x>", "+OK <x@>", "+OK <\x00@x>", "+OK <a b@x>", "+OK no stamp", "+OK <<a@b>>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, greeting string) {
		ts := apopTimestamp(greeting)
		if ts == "" {
			return
		}
		inner := strings.TrimSuffix(strings.TrimPrefix(ts, "<"), ">")
		if len(inner) != len(ts)-2 || strings.Count(inner, "@") != 1 || strings.HasPrefix(inner, "@") || strings.HasSuffix(inner, "@") {
			t.Fatalf("apopTimestamp(%q) = %q", greeting, ts)
		}
		for _, c := range []byte(inner) {
			if c <= ' ' || c >= 0x7f || c == '<' || c == '>' {
				t.Fatalf("apopTimestamp(%q) = %q holds %q", greeting, ts, c)
			}
		}
	})
}
