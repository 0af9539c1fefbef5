package pop3

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
)

// maxAuthCommand is the longest AUTH command line, CRLF included, that may
// carry an initial response (RFC 5034 section 4). A longer one goes after
// the server's empty challenge instead; Microsoft 365 refuses the long form.
const maxAuthCommand = 255

// maxChallengeLine bounds a "+ " challenge line of a SASL exchange.
const maxChallengeLine = 8 << 10

// maxAuthRounds bounds the challenges of one exchange; SCRAM needs three.
const maxAuthRounds = 8

// SASLError is a SASL exchange that the client side ended: the mechanism
// refused a challenge (a SCRAM server that could not prove it knows the
// password, a token the server rejected), or the server claimed success
// without the proof the mechanism requires.
type SASLError struct {
	Mechanism string
	Err       error
}

func (e *SASLError) Error() string { return "pop3: AUTH " + e.Mechanism + ": " + e.Err.Error() }
func (e *SASLError) Unwrap() error { return e.Err }

// Verifier is implemented by SASL mechanisms that authenticate the server
// (SCRAM). Auth calls Verify after the server's +OK and fails the login if
// it returns an error.
type Verifier interface {
	Verify() error
}

// Refusal is implemented by mechanisms whose server says why it refuses
// in a challenge that the client must answer before the server's -ERR:
// the error challenge of a refused OAuth token (RFC 7628 section 3.2.3;
// XOAUTH2 likewise). The mechanism's Next answers it and keeps what it
// said; when the server then replies -ERR without a response code other
// than [AUTH], Auth returns Refused's error as a *SASLError.
type Refusal interface {
	Refused() error
}

// SASLMechanisms returns the mechanisms the server advertised with the
// SASL capability (RFC 5034 section 6), upper-cased.
func (caps Capabilities) SASLMechanisms() []string {
	var out []string
	for _, m := range caps["SASL"] {
		out = append(out, asciiUpper(m))
	}
	return out
}

// Auth authenticates with a SASL mechanism (RFC 5034). An initial response
// goes on the AUTH line unless the line would exceed 255 octets; then it is
// sent in answer to the server's empty challenge. The trace shows the
// server's challenges but none of the client's responses. A -ERR reply is
// returned as an *Error with Command "AUTH"; a failure of the mechanism
// itself as a *SASLError, after the exchange was cancelled with "*".
func (c *Client) Auth(ctx context.Context, mech sasl.Client) error {
	if err := c.ready("AUTH"); err != nil {
		return err
	}
	name, ir, err := mech.Start()
	if err != nil {
		return &SASLError{Mechanism: name, Err: err}
	}
	if name == "" || strings.ContainsAny(name, " \r\n\x00") {
		return ErrBadArgument
	}
	stop := c.tc.watch(ctx)
	defer stop()

	line := "AUTH " + name
	pending := ir // an initial response still to send
	if ir != nil {
		enc := "="
		if len(ir) > 0 {
			enc = base64.StdEncoding.EncodeToString(ir)
		}
		if len(line)+1+len(enc)+2 <= maxAuthCommand {
			line += " " + enc
			pending = nil
			if len(ir) == 0 {
				c.tracef("C: AUTH %s =", name) // empty: nothing to hide
			} else {
				c.tracef("C: AUTH %s <initial response redacted>", name)
			}
		} else {
			c.tracef("C: AUTH %s (initial response of %d octets follows the empty challenge)", name, len(ir))
		}
	} else {
		c.tracef("C: AUTH %s", name)
	}
	if err := c.send(line); err != nil {
		return c.sendErr("AUTH "+name, err)
	}
	for round := 0; ; round++ {
		resp, err := c.readLine(maxChallengeLine, "AUTH")
		if err != nil {
			c.broken = err
			return c.netErr("AUTH "+name, err)
		}
		c.tracef("S: %s", resp)
		if !strings.HasPrefix(resp, "+") || (len(resp) >= 3 && strings.EqualFold(resp[:3], "+OK")) {
			if _, err := c.status("AUTH", resp); err != nil {
				var perr *Error
				if r, ok := mech.(Refusal); ok && r.Refused() != nil && errors.As(err, &perr) && (perr.Code == "" || perr.HasCode(CodeAuth)) {
					return &SASLError{Mechanism: name, Err: r.Refused()}
				}
				return err
			}
			if v, ok := mech.(Verifier); ok {
				if err := v.Verify(); err != nil {
					return &SASLError{Mechanism: name, Err: err}
				}
			}
			return nil
		}
		if round >= maxAuthRounds {
			c.broken = errors.New("too many challenges")
			return &ProtocolError{Op: "AUTH", Msg: fmt.Sprintf("more than %d SASL challenges", maxAuthRounds)}
		}
		challenge, err := decodeChallenge(resp)
		if err != nil {
			c.broken = err
			return &ProtocolError{Op: "AUTH", Msg: err.Error()}
		}
		var out []byte
		if pending != nil {
			out, pending = pending, nil
		} else if out, err = mech.Next(challenge); err != nil {
			// Cancel; the server answers -ERR.
			c.tracef("C: *")
			if werr := c.send("*"); werr != nil {
				return c.sendErr("AUTH "+name, werr)
			}
			if _, rerr := c.readStatus("AUTH", ""); rerr != nil && !isReply(rerr) {
				return rerr
			}
			return &SASLError{Mechanism: name, Err: err}
		}
		c.tracef("C: <SASL response redacted>")
		if err := c.send(base64.StdEncoding.EncodeToString(out)); err != nil {
			return c.sendErr("AUTH "+name, err)
		}
	}
}

// decodeChallenge decodes a server challenge line: "+", or "+ " followed
// by base64 (RFC 5034 section 4).
func decodeChallenge(line string) ([]byte, error) {
	if !strings.HasPrefix(line, "+") {
		return nil, errors.New("not a SASL challenge")
	}
	data := strings.TrimSpace(line[1:])
	if data == "" {
		return []byte{}, nil
	}
	if len(line) > 1 && line[1] != ' ' {
		return nil, errors.New("malformed SASL challenge")
	}
	out, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, errors.New("SASL challenge is not valid base64")
	}
	return out, nil
}

// ready checks that a command may be sent now.
func (c *Client) ready(verb string) error {
	if c.broken != nil {
		return c.broken
	}
	if c.open != nil {
		return errors.New("pop3: " + verb + " while a message is still being read")
	}
	if c.pipe != nil {
		return errors.New("pop3: " + verb + " while a pipeline is in use")
	}
	return nil
}

// send writes one line and flushes it.
func (c *Client) send(line string) error {
	c.w.WriteString(line)
	c.w.WriteString("\r\n")
	if err := c.w.Flush(); err != nil {
		c.broken = err
		return err
	}
	return nil
}
