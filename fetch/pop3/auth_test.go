package pop3

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"

	"github.com/popfetch/popfetch/fetch/saslmech"
)

// scripted is a SASL mechanism that answers challenges from a list and can
// be told to fail its Next or its Verify.
type scripted struct {
	name      string
	ir        []byte
	answers   []string
	nextErr   error
	verifyErr error
	got       []string // the challenges it was given
}

func (s *scripted) Start() (string, []byte, error) { return s.name, s.ir, nil }

func (s *scripted) Next(ch []byte) ([]byte, error) {
	s.got = append(s.got, string(ch))
	if s.nextErr != nil {
		return nil, s.nextErr
	}
	if len(s.answers) == 0 {
		return nil, sasl.ErrUnexpectedServerChallenge
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	return []byte(a), nil
}

type verifying struct{ *scripted }

func (v verifying) Verify() error { return v.verifyErr }

// refusing answers the server's error challenge and says it was refused.
type refusing struct{ *scripted }

func (r refusing) Refused() error {
	if len(r.got) == 0 {
		return nil
	}
	return errors.New("the server refused the token")
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestAuth(t *testing.T) {
	// An initial response whose AUTH line is exactly 255 octets with CRLF
	// goes inline; one octet more and it waits for the empty challenge.
	// "AUTH PLAIN " is 11 octets, CRLF 2: 242 octets of base64 fit, which
	// is 181 octets of response (base64 of 181 octets is 244: too long;
	// of 180 it is 240: fits).
	fits := strings.Repeat("a", 180)
	long := strings.Repeat("b", 182)
	if n := len("AUTH PLAIN " + b64(fits) + "\r\n"); n > 255 {
		t.Fatalf("test setup: %d octets", n)
	}
	if n := len("AUTH PLAIN " + b64(long) + "\r\n"); n <= 255 {
		t.Fatalf("test setup: %d octets", n)
	}
	tests := []struct {
		name   string
		mech   sasl.Client
		script transcript
		check  func(t *testing.T, err error)
	}{
		{"PLAIN inline", sasl.NewPlainClient("", "tim", "tanstaaf"), transcript{
			"C: AUTH PLAIN " + b64("\x00tim\x00tanstaaf"), "S: +OK welcome"}, nil},
		{"initial response at 255 octets", &scripted{name: "PLAIN", ir: []byte(fits)}, transcript{
			"C: AUTH PLAIN " + b64(fits), "S: +OK"}, nil},
		{"initial response past 255 octets", &scripted{name: "PLAIN", ir: []byte(long)}, transcript{
			"C: AUTH PLAIN", "S: + ", "C: " + b64(long), "S: +OK"}, nil},
		{"empty challenge without a space", &scripted{name: "XOAUTH2", ir: []byte(long)}, transcript{
			"C: AUTH XOAUTH2", "S: +", "C: " + b64(long), "S: +OK"}, nil},
		{"empty initial response", sasl.NewExternalClient(""), transcript{
			"C: AUTH EXTERNAL =", "S: +OK"}, nil},
		{"LOGIN", sasl.NewLoginClient("tim", "tanstaaf"), transcript{
			"C: AUTH LOGIN " + b64("tim"), "S: + " + b64("Password:"), "C: " + b64("tanstaaf"), "S: +OK"}, nil},
		{"CRAM-MD5 (RFC 2195)", saslmech.NewCRAMMD5Client("tim", "tanstaaftanstaaf"), transcript{
			"C: AUTH CRAM-MD5", "S: + " + b64("<1896.697170952@postoffice.reston.mci.net>"),
			"C: " + b64("tim b913a602c7eda7a495b4e6e7334d3890"), "S: +OK"}, nil},
		{"empty response", &scripted{name: "X", answers: []string{""}}, transcript{
			"C: AUTH X", "S: + " + b64("hi"), "C: ", "S: +OK"}, nil},
		{"refused", sasl.NewPlainClient("", "tim", "wrong"), transcript{
			"C: AUTH PLAIN " + b64("\x00tim\x00wrong"), "S: -ERR [AUTH] Authentication failed."},
			func(t *testing.T, err error) {
				var perr *Error
				if !errors.As(err, &perr) || perr.Command != "AUTH" || perr.Code != CodeAuth {
					t.Fatalf("err = %#v", err)
				}
			}},
		{"mechanism gives up", &scripted{name: "X", nextErr: errors.New("bad token")}, transcript{
			"C: AUTH X", "S: + " + b64(`{"status":"401"}`), "C: *", "S: -ERR cancelled"},
			func(t *testing.T, err error) {
				var serr *SASLError
				if !errors.As(err, &serr) || serr.Mechanism != "X" || !strings.Contains(err.Error(), "bad token") {
					t.Fatalf("err = %v", err)
				}
			}},
		{"token refused: the error challenge answered", refusing{&scripted{name: "OAUTHBEARER", ir: []byte("tok"), answers: []string{"\x01"}}}, transcript{
			"C: AUTH OAUTHBEARER " + b64("tok"), "S: + " + b64(`{"status":"invalid_token"}`), "C: AQ==", "S: -ERR [AUTH] Authentication failed."},
			func(t *testing.T, err error) {
				var serr *SASLError
				if !errors.As(err, &serr) || serr.Mechanism != "OAUTHBEARER" || !strings.Contains(err.Error(), "refused the token") {
					t.Fatalf("err = %v", err)
				}
			}},
		{"token refused, server unavailable", refusing{&scripted{name: "XOAUTH2", ir: []byte("tok"), answers: []string{""}}}, transcript{
			"C: AUTH XOAUTH2 " + b64("tok"), "S: + " + b64(`{"status":"401"}`), "C: ", "S: -ERR [SYS/TEMP] try later"},
			func(t *testing.T, err error) {
				var perr *Error
				if !errors.As(err, &perr) || !perr.HasCode(CodeSysTemp) {
					t.Fatalf("err = %v", err)
				}
			}},
		{"server unproven", verifying{&scripted{name: "SCRAM-SHA-256", answers: []string{"c=biws"}, verifyErr: errors.New("no proof")}}, transcript{
			"C: AUTH SCRAM-SHA-256", "S: + " + b64("r=x"), "C: " + b64("c=biws"), "S: +OK"},
			func(t *testing.T, err error) {
				var serr *SASLError
				if !errors.As(err, &serr) || !strings.Contains(err.Error(), "no proof") {
					t.Fatalf("err = %v", err)
				}
			}},
		{"challenge not base64", &scripted{name: "X"}, transcript{"C: AUTH X", "S: + ***"}, protocolError},
		{"challenge without space", &scripted{name: "X"}, transcript{"C: AUTH X", "S: +abcd"}, protocolError},
		{"garbage reply", &scripted{name: "X"}, transcript{"C: AUTH X", "S: hello"}, protocolError},
		{"overlong challenge", &scripted{name: "X"}, transcript{"C: AUTH X", "SX: + " + strings.Repeat("A", 9000)}, protocolError},
		{"endless challenges", &scripted{name: "X", answers: strings.Split(strings.Repeat("a,", 20), ",")}, func() transcript {
			s := transcript{"C: AUTH X"}
			for range maxAuthRounds {
				s = append(s, "S: + "+b64("more"), "C: "+b64("a"))
			}
			return append(s, "SX: + "+b64("more"))
		}(), protocolError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var trace bytes.Buffer
			script := append(transcript{"S: +OK ready"}, tt.script...)
			c, err, wait := runTranscript(t, script, &Options{Debug: &trace})
			if err != nil {
				t.Fatal(err)
			}
			err = c.Auth(ctx(t), tt.mech)
			c.Close()
			wait()
			if tt.check == nil {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				tt.check(t, err)
			}
			for _, secret := range []string{"tanstaaf", b64("\x00tim\x00tanstaaf"), b64("tanstaaf"), b64(long)[:40], b64(fits)[:40]} {
				if strings.Contains(trace.String(), secret) {
					t.Fatalf("the trace holds %q:\n%s", secret, trace.String())
				}
			}
		})
	}
}

func protocolError(t *testing.T, err error) {
	t.Helper()
	var perr *ProtocolError
	if !errors.As(err, &perr) {
		t.Fatalf("err = %v, want a ProtocolError", err)
	}
}

func TestSASLMechanisms(t *testing.T) {
	caps := Capabilities{"SASL": {"plain", "SCRAM-SHA-256", "xoauth2"}}
	got := strings.Join(caps.SASLMechanisms(), " ")
	if got != "PLAIN SCRAM-SHA-256 XOAUTH2" {
		t.Fatalf("SASLMechanisms = %q", got)
	}
	if (Capabilities{}).SASLMechanisms() != nil {
		t.Fatal("mechanisms without SASL")
	}
}

func TestDecodeChallenge(t *testing.T) {
	tests := []struct {
		line, want string
		ok         bool
	}{
		{"+", "", true}, {"+ ", "", true}, {"+  ", "", true}, {"+ " + b64("hi"), "hi", true},
		{"+ " + b64("hi") + " ", "hi", true}, {"+x", "", false}, {"+ !!", "", false}, {"OK", "", false},
	}
	for _, tt := range tests {
		got, err := decodeChallenge(tt.line)
		if (err == nil) != tt.ok || string(got) != tt.want {
			t.Errorf("decodeChallenge(%q) = %q, %v", tt.line, got, err)
		}
	}
}
