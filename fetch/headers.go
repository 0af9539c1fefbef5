package fetch

import (
	"bufio"
	"bytes"
	"io"
	"net/mail"
	"strings"
)

// maxHeaderPeek is how much of a message is looked at for its sender when
// return_path needs it; a header longer than that is taken as having no
// Return-Path and no From.
const maxHeaderPeek = 64 << 10

// addedFields returns the header fields popfetch puts in front of a
// message, in this order: Return-Path (return_path, when the message has
// none), Delivered-To (delivered_to), X-Envelope-To (envelope_to). The
// Received field follows them. r is the message; the reader returned
// reads it from its start.
func (s *session) addedFields(r io.Reader) (string, io.Reader) {
	a := s.acct
	var b strings.Builder
	if a.ReturnPath {
		br := bufio.NewReaderSize(r, maxHeaderPeek)
		head, _ := br.Peek(maxHeaderPeek) // a failed read fails again, for the stage to see
		r = br
		if rp := returnPath(head); rp != "" {
			b.WriteString("Return-Path: " + rp + "\n")
		}
	}
	if a.DeliveredTo {
		b.WriteString("Delivered-To: " + fieldValue(a.Recipient) + "\n")
	}
	if a.EnvelopeTo {
		b.WriteString("X-Envelope-To: " + fieldValue(a.Recipient) + "\n")
	}
	return b.String(), r
}

// returnPath returns "<address>" of the message's first From address if
// its header (in head) has no Return-Path field; "" if it has one, or no
// usable From.
func returnPath(head []byte) string {
	fields := headerFields(bytes.NewReader(head))
	if _, ok := fields["return-path"]; ok {
		return ""
	}
	list, err := mail.ParseAddressList(fields["from"])
	if err != nil || len(list) == 0 {
		return ""
	}
	addr := fieldValue(list[0].Address)
	if strings.ContainsAny(addr, "<> ") {
		return ""
	}
	return "<" + addr + ">"
}

// fieldValue keeps a value on its line: control characters become '?'.
func fieldValue(v string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, v)
}
