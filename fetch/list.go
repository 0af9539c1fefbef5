package fetch

import (
	"bufio"
	"context"
	"errors"
	"io"
	"mime"
	"strings"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/uidstore"
)

// Listed is a message on the server, as List shows it.
type Listed struct {
	Number int
	UID    string // "" without UIDL
	Size   int64
	Seen   bool      // delivered before (by its UID)
	First  time.Time // when first delivered, if Seen
	// Subject and From are filled in with headers: from TOP n 0, decoded
	// (RFC 2047) and cut to 200 characters.
	Subject, From string
}

// maxListedHeader bounds the header List reads of one message.
const maxListedHeader = 64 << 10

// List returns the messages on the server: number, UID, size, and
// whether each was delivered before; with headers, their Subject and
// From too, one TOP command per message. It changes nothing, on the
// server or in the store (it settles no pending deliveries either).
func List(ctx context.Context, acct *Account, store *uidstore.Store, headers bool, opts *Options) ([]Listed, error) {
	ctx, cancel := withCeiling(ctx, acct)
	defer cancel()
	s := newSession(acct, store, nil, opts)
	s.sizes = true
	s.keepUIDs = true
	defer s.close()
	msgs, _, err := s.open(ctx)
	if err != nil {
		return nil, classify(acct.Name, err)
	}
	out := make([]Listed, len(msgs))
	for i, m := range msgs {
		out[i] = Listed{Number: m.num, UID: m.uid, Size: m.size, Seen: m.seen, First: m.first}
	}
	if headers && s.caps != nil && !s.caps.Has("TOP") {
		// TOP is optional (RFC 1939), and some servers hang up on a
		// command they do not know: ask only where CAPA lists it.
		s.log.Warn("the server does not offer TOP: showing no Subject or From")
		headers = false
	}
	if headers {
		for i := range out {
			if err := s.header(ctx, &out[i]); err != nil {
				if ctx.Err() != nil || !isNetwork(err) {
					return nil, classify(acct.Name, err)
				}
				// The server hung up at TOP (a server without CAPA
				// that does not know it): the listing stands.
				s.log.Warn("the server hung up at TOP: showing no more Subject or From", "error", err.Error())
				return out, nil
			}
		}
	}
	if err := s.c.Quit(ctx); err != nil {
		return nil, classify(acct.Name, err)
	}
	return out, nil
}

// header fills in l's Subject and From from TOP n 0. A server that
// refuses TOP for one message leaves them empty.
func (s *session) header(ctx context.Context, l *Listed) error {
	r, err := s.c.Top(ctx, l.Number, 0)
	if err != nil {
		var perr *pop3.Error
		if errors.As(err, &perr) {
			return nil // -ERR to this TOP: the connection is still good
		}
		return err
	}
	h := headerFields(io.LimitReader(r, maxListedHeader))
	if err := r.Close(); err != nil {
		return err
	}
	l.Subject, l.From = decodeHeader(h["subject"]), decodeHeader(h["from"])
	return nil
}

// headerFields reads a message header up to its empty line and returns
// the first value of each field, by lower-case name, unfolded. It takes
// any bytes, as mail readers do: net/textproto refuses a field with a
// control character, and with it the rest of the header.
func headerFields(r io.Reader) map[string]string {
	fields := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxListedHeader)
	last := ""
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last != "" {
				fields[last] += " " + strings.TrimSpace(line)
			}
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		last = ""
		if !ok {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		if _, dup := fields[name]; !dup {
			fields[name] = strings.TrimSpace(value)
			last = name
		}
	}
	return fields
}

// decodeHeader decodes RFC 2047 words, drops control characters and cuts
// the value to 200 characters.
func decodeHeader(v string) string {
	if dec, err := new(mime.WordDecoder).DecodeHeader(v); err == nil {
		v = dec
	}
	v = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, v)
	if r := []rune(v); len(r) > 200 {
		v = string(r[:200])
	}
	return v
}
