package deliver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// traceStep is what one side sent in one Write or Read.
type traceStep struct {
	side string // "C" or "S"
	data string
}

func c(s string) traceStep  { return traceStep{"C", s} }
func sv(s string) traceStep { return traceStep{"S", s} }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// runTrace feeds steps to an imapTrace that knows secrets and returns
// what it wrote, once closed.
func runTrace(t *testing.T, secrets []string, steps []traceStep) string {
	t.Helper()
	var out bytes.Buffer
	tr := newIMAPTrace(&out)
	for _, s := range secrets {
		tr.redact(s)
	}
	for _, s := range steps {
		if s.side == "C" {
			tr.client([]byte(s.data))
		} else {
			tr.server([]byte(s.data))
		}
	}
	tr.close()
	return out.String()
}

func TestIMAPTrace(t *testing.T) {
	const pw = "s3cr3t-Pa55"
	const tok = "ya29.a0AfH6SMBtoken"
	plain := b64("\x00me@example.com\x00" + pw)
	xoauth := b64("user=me@example.com\x01auth=Bearer " + tok + "\x01\x01")
	giant := strings.Repeat("x", 5000)
	for _, tc := range []struct {
		name    string
		secrets []string // given to redact; nil: the trace must hide them unaided
		steps   []traceStep
		want    string
		never   []string
	}{
		{
			name: "LOGIN with quoted arguments",
			steps: []traceStep{
				sv("* OK IMAP4rev1 ready\r\n"),
				c(`A1 LOGIN "me@example.com" "` + pw + `"` + "\r\n"),
				sv("A1 OK Logged in\r\n"),
			},
			want:  "S: * OK IMAP4rev1 ready\nC: A1 LOGIN <redacted>\nS: A1 OK Logged in\n",
			never: []string{pw, "me@example.com"},
		},
		{
			name: "LOGIN with synchronising literals",
			steps: []traceStep{
				c("A1 LOGIN {14}\r\n"),
				sv("+ Ready for literal data\r\n"),
				c("me@example.com {11}\r\n"),
				sv("+ Ready for literal data\r\n"),
				c(pw),
				c("\r\n"),
				sv("A1 OK Logged in\r\n"),
				c("A2 SELECT INBOX\r\n"),
			},
			want: "C: A1 LOGIN <redacted>\nS: + Ready for literal data\nS: + Ready for literal data\n" +
				"S: A1 OK Logged in\nC: A2 SELECT INBOX\n",
			never: []string{pw, "me@example.com", "{11}", "11 octets"},
		},
		{
			name: "LOGIN with non-synchronising literals in one write",
			steps: []traceStep{
				c("A1 LOGIN {14+}\r\nme@example.com {11+}\r\n" + pw + "\r\nA2 CAPABILITY\r\n"),
			},
			want:  "C: A1 LOGIN <redacted>\nC: A2 CAPABILITY\n",
			never: []string{pw, "me@example.com"},
		},
		{
			name: "AUTHENTICATE PLAIN without SASL-IR",
			steps: []traceStep{
				c("A1 AUTHENTICATE PLAIN\r\n"),
				sv("+ \r\n"),
				c(plain + "\r\n"),
				sv("A1 OK [CAPABILITY IMAP4rev1] Logged in\r\n"),
				c("A2 NOOP\r\n"),
			},
			want: "C: A1 AUTHENTICATE PLAIN\nS: + \nC: <SASL response redacted>\n" +
				"S: A1 OK [CAPABILITY IMAP4rev1] Logged in\nC: A2 NOOP\n",
			never: []string{plain, pw},
		},
		{
			name: "AUTHENTICATE PLAIN with SASL-IR",
			steps: []traceStep{
				c("A1 AUTHENTICATE PLAIN " + plain + "\r\n"),
				sv("A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
			},
			want:  "C: A1 AUTHENTICATE PLAIN <initial response redacted>\nS: A1 NO [AUTHENTICATIONFAILED] Authentication failed.\n",
			never: []string{plain},
		},
		{
			name: "AUTHENTICATE with an empty initial response",
			steps: []traceStep{
				c("A1 AUTHENTICATE PLAIN =\r\n"),
				sv("+ \r\n"),
				c(plain + "\r\n"),
				sv("A1 OK done\r\n"),
			},
			want:  "C: A1 AUTHENTICATE PLAIN =\nS: + \nC: <SASL response redacted>\nS: A1 OK done\n",
			never: []string{plain},
		},
		{
			name: "AUTHENTICATE LOGIN in two steps, cancelled",
			steps: []traceStep{
				c("A1 AUTHENTICATE LOGIN\r\n"),
				sv("+ " + b64("Username:") + "\r\n"),
				c(b64("me@example.com") + "\r\n"),
				sv("+ " + b64("Password:") + "\r\n"),
				c(b64(pw) + "\r\n"),
				sv("+ " + b64("Again:") + "\r\n"),
				c("*\r\n"),
				sv("A1 BAD cancelled\r\n"),
			},
			want: "C: A1 AUTHENTICATE LOGIN\nS: + " + b64("Username:") + "\nC: <SASL response redacted>\n" +
				"S: + " + b64("Password:") + "\nC: <SASL response redacted>\nS: + " + b64("Again:") + "\nC: *\nS: A1 BAD cancelled\n",
			never: []string{b64(pw), b64("me@example.com")},
		},
		{
			name: "XOAUTH2 with the error continuation",
			steps: []traceStep{
				c("A1 AUTHENTICATE XOAUTH2 " + xoauth + "\r\n"),
				sv("+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"),
				c("\r\n"),
				sv("A1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"),
				c("A2 LOGOUT\r\n"),
			},
			want: "C: A1 AUTHENTICATE XOAUTH2 <initial response redacted>\nS: + eyJzdGF0dXMiOiI0MDEifQ==\n" +
				"C: <SASL response redacted>\nS: A1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\nC: A2 LOGOUT\n",
			never: []string{xoauth, tok},
		},
		{
			name: "writes split in the command name and in the response",
			steps: []traceStep{
				c("A1 AUTH"), c("ENTICATE PL"), c("AIN " + plain[:5]), c(plain[5:] + "\r"), c("\n"),
				sv("A1 O"), sv("K\r\n"),
				c("A2 LOG"), c("IN me "), c(pw[:3]), c(pw[3:] + "\r\n"),
			},
			want:  "C: A1 AUTHENTICATE PLAIN <initial response redacted>\nS: A1 OK\nC: A2 LOGIN <redacted>\n",
			never: []string{plain[:5], plain[5:], pw[3:]},
		},
		{
			name: "APPEND: the message summed up, pipelined",
			steps: []traceStep{
				c("A5 APPEND INBOX (\\Seen) {24+}\r\nSubject: hi\r\n\r\nsecret!\r\n\r\nA6 APP"),
				c("END INBOX {5}\r\n"),
				sv("+ go\r\n"),
				c("hel"), c("lo\r\n"),
				sv("A5 OK [APPENDUID 7 41] Append completed.\r\nA6 OK [APPENDUID 7 42] Append completed.\r\n"),
			},
			want: "C: A5 APPEND INBOX (\\Seen) {24+}\nC: <24 octets of message data>\nC: A6 APPEND INBOX {5}\nS: + go\n" +
				"C: <5 octets of message data>\nS: A5 OK [APPENDUID 7 41] Append completed.\nS: A6 OK [APPENDUID 7 42] Append completed.\n",
			never: []string{"Subject", "secret!", "hello"},
		},
		{
			name: "a literal from the server",
			steps: []traceStep{
				sv("* 1 FETCH (UID 41 BODY[HEADER.FIELDS (MESSAGE-ID)] {21}\r\nMessage-ID: <a@b>\r\n\r\n)\r\n"),
			},
			want:  "S: * 1 FETCH (UID 41 BODY[HEADER.FIELDS (MESSAGE-ID)] {21}\nS: <literal of 21 octets>\nS: )\n",
			never: []string{"a@b"},
		},
		{
			name: "a server line with ESC, NUL and a bare CR",
			steps: []traceStep{
				sv("* OK \x1b[2J\x1b]0;pwned\x07 hi\x00there\rX\r\n"),
			},
			want: `S: * OK \x1b[2J\x1b]0;pwned\x07 hi\x00there\x0dX` + "\n",
		},
		{
			name:  "a giant line is cut",
			steps: []traceStep{sv("* OK " + giant + "\r\n"), c("A1 NOOP\r\n")},
			want:  "S: * OK " + giant[:maxTraceLine-5] + " ...(cut: a line of 5007 octets)\nC: A1 NOOP\n",
		},
		{
			name:  "a line without an end, at close",
			steps: []traceStep{sv("* OK ready\r\n* BYE going aw")},
			want:  "S: * OK ready\nS: * BYE going aw (no line end)\n",
		},
		{
			name:  "an APPEND cut short",
			steps: []traceStep{c("A5 APPEND INBOX {100+}\r\nSubject: x\r\n")},
			want:  "C: A5 APPEND INBOX {100+}\nC: <100 octets of message data, incomplete: 88 missing>\n",
			never: []string{"Subject"},
		},
		{
			name:    "the server echoes the password",
			secrets: []string{pw},
			steps:   []traceStep{sv("A1 NO password " + pw + " is wrong\r\n")},
			want:    "S: A1 NO password <redacted> is wrong\n",
			never:   []string{pw},
		},
		{
			name:    "a long token echoed across the cut",
			secrets: []string{strings.Repeat("T", 2000)},
			steps:   []traceStep{sv("* NO " + strings.Repeat("y", 990) + strings.Repeat("T", 2000) + "\r\n")},
			want:    "S: * NO " + strings.Repeat("y", 990) + "<reda ...(cut: a line of 2997 octets)\n",
			never:   []string{"TTTT"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := runTrace(t, tc.secrets, tc.steps)
			if got != tc.want {
				t.Errorf("trace:\n%s\nwant:\n%s", got, tc.want)
			}
			for _, s := range tc.never {
				if strings.Contains(got, s) {
					t.Errorf("the trace shows %q:\n%s", s, got)
				}
			}
		})
	}
}

// TestIMAPTraceAnySplit feeds a login transcript cut at every octet: the
// trace is the same however the writes fall, and never shows a secret.
func TestIMAPTraceAnySplit(t *testing.T) {
	const pw = "hunter22"
	client := "A1 LOGIN {2+}\r\nme {8+}\r\n" + pw + "\r\nA2 AUTHENTICATE PLAIN\r\n" + b64("\x00me\x00"+pw) + "\r\nA3 NOOP\r\n"
	// The server answers A2 once the client has sent it all.
	k := strings.Index(client, "A3")
	want := runTrace(t, nil, []traceStep{c(client[:k]), sv("A2 OK\r\n"), c(client[k:])})
	for i := 1; i < len(client); i++ {
		var steps []traceStep
		if i <= k {
			steps = []traceStep{c(client[:i]), c(client[i:k]), sv("A2 OK\r\n"), c(client[k:])}
		} else {
			steps = []traceStep{c(client[:k]), sv("A2 OK\r\n"), c(client[k:i]), c(client[i:])}
		}
		if got := runTrace(t, nil, steps); got != want {
			t.Fatalf("split at %d:\n%s\nwant:\n%s", i, got, want)
		}
	}
	if w := "C: A1 LOGIN <redacted>\nC: A2 AUTHENTICATE PLAIN\nC: <SASL response redacted>\nS: A2 OK\nC: A3 NOOP\n"; want != w {
		t.Errorf("trace:\n%s\nwant:\n%s", want, w)
	}
}

// traceServer is a hostile IMAP server for TestIMAPTraceSession: its
// greeting (caps) carries a terminal escape, it reads literals of either
// kind, answers AUTHENTICATE as auth says, and echoes what it got in its
// answer to the login.
func traceServer(caps string, auth func(c net.Conn, r *bufio.Reader, tag string) bool) func(c net.Conn, r *bufio.Reader) {
	return func(c net.Conn, r *bufio.Reader) {
		fmt.Fprintf(c, "* OK [CAPABILITY %s] hello \x1b]0;pwned\x07\x00\r\n", strings.TrimSpace("IMAP4rev1 LITERAL+ UIDPLUS "+caps))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			// A command with literals: read them, answering "+" to the
			// synchronising ones.
			for m := literalRE.FindStringSubmatch(line); m != nil; m = literalRE.FindStringSubmatch(line) {
				if !strings.HasSuffix(line, "+}\r\n") {
					io.WriteString(c, "+ go on\r\n")
				}
				n, _ := strconv.Atoi(m[1])
				lit := make([]byte, n)
				if _, err := io.ReadFull(r, lit); err != nil {
					return
				}
				rest, err := r.ReadString('\n')
				if err != nil {
					return
				}
				line = line[:len(line)-len(m[0])] + string(lit) + rest
			}
			tag, cmd := tagOf(line), strings.ToUpper(strings.Fields(line)[1])
			switch cmd {
			case "AUTHENTICATE":
				if !auth(c, r, tag) {
					return
				}
			case "LOGIN":
				fmt.Fprintf(c, "%s OK welcome, you said %q\r\n", tag, strings.TrimSpace(line))
			case "STATUS":
				fmt.Fprintf(c, "* STATUS INBOX (UIDNEXT 7 UIDVALIDITY 42)\r\n%s OK done\r\n", tag)
			case "APPEND":
				fmt.Fprintf(c, "%s OK [APPENDUID 42 7] done\r\n", tag)
			case "LOGOUT":
				fmt.Fprintf(c, "* BYE\r\n%s OK bye\r\n", tag)
				return
			default:
				fmt.Fprintf(c, "%s OK done\r\n", tag)
			}
		}
	}
}

// TestIMAPTraceSession runs the IMAP deliverer with a Trace against
// hostile servers, through go-imap's own writes: AUTHENTICATE PLAIN
// without SASL-IR (the secret on a continuation line), LOGIN with a
// password go-imap sends as a literal, XOAUTH2 refused with the error
// continuation. The trace never shows the password or the token, raw
// or in base64, nor the message, nor a control character; it shows the
// APPEND and its OK.
func TestIMAPTraceSession(t *testing.T) {
	const pw = "pässwörd\"\\secret"
	const tok = "ya29.secret-token"
	for _, tc := range []struct {
		name, caps, auth string
		token            bool
		script           func(c net.Conn, r *bufio.Reader, tag string) bool
		fails            bool
		want             []string
	}{
		{
			name: "PLAIN without SASL-IR", caps: "AUTH=PLAIN", auth: IMAPAuthPlain,
			script: func(c net.Conn, r *bufio.Reader, tag string) bool {
				io.WriteString(c, "+ \r\n")
				resp, err := r.ReadString('\n')
				if err != nil {
					return false
				}
				fmt.Fprintf(c, "%s OK [ALERT] you sent %s and %s\r\n", tag, strings.TrimSpace(resp), pw)
				return true
			},
			want: []string{"C: T1 AUTHENTICATE PLAIN\n", "S: + \n", "C: <SASL response redacted>\n",
				"S: T1 OK [ALERT] you sent <redacted> and <redacted>\n"},
		},
		{
			// The server's tagged answer comes in the same read as its
			// "+", before the client's response is sent: the trace
			// still takes that response for a SASL one.
			name: "PLAIN answered before the response", caps: "AUTH=PLAIN", auth: IMAPAuthPlain,
			script: func(c net.Conn, r *bufio.Reader, tag string) bool {
				fmt.Fprintf(c, "+ \r\n%s OK early\r\n", tag)
				if _, err := r.ReadString('\n'); err != nil {
					return false
				}
				return true
			},
			fails: true, // go-imap never ends that exchange: it is given up
			want:  []string{"C: T1 AUTHENTICATE PLAIN\n", "S: + \n", "S: T1 OK early\n"},
		},
		{
			name: "LOGIN with a literal password", caps: "", auth: IMAPAuthLogin,
			want: []string{"C: T1 LOGIN <redacted>\n", `S: T1 OK welcome, you said "T1 LOGIN \"u\" <redacted>"` + "\n"},
		},
		{
			name: "XOAUTH2 refused with the error continuation", caps: "AUTH=XOAUTH2 SASL-IR", auth: IMAPAuthXOAuth2, token: true,
			script: func(c net.Conn, r *bufio.Reader, tag string) bool {
				io.WriteString(c, "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n")
				if _, err := r.ReadString('\n'); err != nil {
					return false
				}
				fmt.Fprintf(c, "%s NO [AUTHENTICATIONFAILED] Invalid credentials\r\n", tag)
				return true
			},
			fails: true,
			want: []string{"C: T1 AUTHENTICATE XOAUTH2 <initial response redacted>\n", "S: + eyJzdGF0dXMiOiI0MDEifQ==\n",
				"C: <SASL response redacted>\n", "S: T1 NO [AUTHENTICATIONFAILED] Invalid credentials\n"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := hostileIMAP(t, traceServer(tc.caps, tc.script))
			var out bytes.Buffer
			m.Trace = &out
			m.Auth = tc.auth
			m.Password = func(context.Context) (string, error) { return pw, nil }
			if tc.token {
				m.Token = func(context.Context) (string, error) { return tok, nil }
			}
			s, err := m.Stage(context.Background(), strings.NewReader("Subject: private\n\nthe body\n"), Envelope{})
			if tc.fails != (err != nil) {
				t.Fatalf("Stage: %v", err)
			}
			if err == nil {
				if err := s.Publish(context.Background()); err != nil {
					t.Fatal(err)
				}
				if err := m.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			m.Close()
			got := out.String()
			for _, w := range append(tc.want, "S: * OK [CAPABILITY", `hello \x1b]0;pwned\x07\x00`) {
				if !strings.Contains(got, w) {
					t.Errorf("the trace lacks %q:\n%s", w, got)
				}
			}
			if !tc.fails && !regexp.MustCompile(`C: (T\d+) APPEND INBOX .*\n(?s:.*)C: <\d+ octets of message data>\n(?s:.*)S: T\d+ OK \[APPENDUID 42 7\] done\n`).MatchString(got) {
				t.Errorf("the trace lacks the APPEND and its OK:\n%s", got)
			}
			for _, never := range []string{pw, "sswörd", tok, b64("\x00u\x00" + pw), b64(pw), b64("user=u\x01auth=Bearer " + tok + "\x01\x01"),
				"private", "the body", "\x1b", "\x00", "\x07"} {
				if strings.Contains(got, never) {
					t.Errorf("the trace shows %q:\n%s", never, got)
				}
			}
		})
	}
}

// TestIMAPTraceLongSASL: an XOAUTH2 initial response of a long token
// (Microsoft's run to a few KiB) is hidden whole, also where the server
// echoes it, even though the trace shows lines of 1000 octets.
func TestIMAPTraceLongSASL(t *testing.T) {
	tok := strings.Repeat("eyJ0eXAiOiJKV1QiLCJub25jZSI6", 150) // 4350 octets
	ir := b64("user=me@example.com\x01auth=Bearer " + tok + "\x01\x01")
	got := runTrace(t, nil, []traceStep{
		c("A1 AUTHENTICATE XOAUTH2 " + ir + "\r\n"),
		sv("A1 NO you sent " + ir + "\r\n"),
	})
	if want := "C: A1 AUTHENTICATE XOAUTH2 <initial response redacted>\nS: A1 NO you sent <redacted>\n"; got != want {
		t.Errorf("trace:\n%s\nwant:\n%s", got, want)
	}
}

// TestIMAPTraceEchoAtCut: a line the server makes longer than the trace
// shows, with the secret echoed at its start and again where the kept
// part ends. Replacing the first echo shortens the line, which must not
// pull the part of the second echo that was kept into what is shown.
func TestIMAPTraceEchoAtCut(t *testing.T) {
	tok := "tok-" + strings.Repeat("Q", 1996) // an OAuth2 token's size
	for _, pad := range []int{0, 1, 50, 990} {
		line := "* NO " + strings.Repeat("y", pad) + tok + tok + tok + "\r\n"
		out := runTrace(t, []string{tok}, []traceStep{sv(line)})
		if strings.Contains(out, "QQQQ") {
			t.Errorf("pad %d: part of the token shown: %.200q...", pad, out)
		}
		if !strings.Contains(out, "<reda") {
			t.Errorf("pad %d: %.200q: no <redacted> where the token was", pad, out)
		}
	}
	pw := "pw-0123456789abcdefghijklmnopqrstuvwxyz"
	line := "* NO x" + strings.Repeat(pw, 30) + "\r\n"
	out := runTrace(t, []string{pw}, []traceStep{sv(line)})
	for i := 4; i < len(pw); i++ {
		if strings.HasSuffix(strings.TrimSuffix(strings.SplitN(out, " ...(cut", 2)[0], "\n"), pw[:i]) {
			t.Errorf("a prefix of the password shown: %q", out)
			break
		}
	}
}

// TestIMAPTraceResponseAfterAnswer: a SASL response the client sends
// after the server's tagged answer (to a "+" that came with it) is still
// hidden; a command line in its place keeps its literal hidden too.
func TestIMAPTraceResponseAfterAnswer(t *testing.T) {
	resp := b64("\x00me\x00s3cr3t-Pa55")
	got := runTrace(t, nil, []traceStep{
		c("A1 AUTHENTICATE PLAIN\r\n"),
		sv("+ \r\nA1 OK early\r\n"),
		c(resp + "\r\n"),
		c("A2 NOOP\r\n"),
	})
	if want := "C: A1 AUTHENTICATE PLAIN\nS: + \nS: A1 OK early\nC: <SASL response redacted>\nC: A2 NOOP\n"; got != want {
		t.Errorf("trace:\n%s\nwant:\n%s", got, want)
	}
	got = runTrace(t, nil, []traceStep{
		c("A1 AUTHENTICATE PLAIN\r\n"),
		sv("+ \r\nA1 NO early\r\n"),
		c("A2 APPEND INBOX {12}\r\nprivate body\r\n"),
	})
	if strings.Contains(got, "private") {
		t.Errorf("a literal shown:\n%s", got)
	}
}
