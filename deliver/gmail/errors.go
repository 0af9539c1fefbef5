package gmail

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// APIError is a reply of the Gmail API other than success: the HTTP status
// and what Google's error body said, cleaned for showing (see clean).
//
// The body's shape is that of Google's "Resolve errors" guide for the
// Gmail API: an object "error" with "code" (the HTTP status), "message",
// "status" (the canonical name, such as RESOURCE_EXHAUSTED) and a list
// "errors" whose items carry a "reason" (such as rateLimitExceeded).
type APIError struct {
	Op         string // "import", "labels.list", "labels.create", "messages.list"
	HTTPStatus int
	Status     string // Google's canonical status, e.g. "RESOURCE_EXHAUSTED"
	Reason     string // the first errors[].reason, e.g. "userRateLimitExceeded"
	Message    string
	RetryAfter string // the Retry-After header, if any (cleaned)
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gmail %s: HTTP %d", e.Op, e.HTTPStatus)
	if e.Status != "" {
		b.WriteString(" " + e.Status)
	}
	if e.Reason != "" {
		b.WriteString(" (" + e.Reason + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// Temporary reports whether the same request may succeed later: rate
// limits (429, and 403 with a rate-limit reason), server errors (5xx) and
// a request timeout (408). A token refused even after a refresh (401)
// is not: the grant lacks a scope or was revoked, which needs the user.
func (e *APIError) Temporary() bool {
	switch {
	case e.HTTPStatus == http.StatusTooManyRequests, e.HTTPStatus == http.StatusRequestTimeout,
		e.HTTPStatus >= 500:
		return true
	case e.HTTPStatus == http.StatusForbidden:
		return rateLimited(e.Reason)
	}
	return false
}

// retryNow reports whether the request should be tried again within the
// poll (after a wait): rate limits and server errors, but not a daily
// limit, which lasts until the next day.
func (e *APIError) retryNow() bool {
	switch {
	case e.HTTPStatus == http.StatusTooManyRequests, e.HTTPStatus >= 500:
		return true
	case e.HTTPStatus == http.StatusForbidden:
		return e.Reason == "rateLimitExceeded" || e.Reason == "userRateLimitExceeded"
	}
	return false
}

// rateLimited: the reasons the "Resolve errors" guide lists under 403 for
// limits that clear with time (per-user and per-project rates, the daily
// limit).
func rateLimited(reason string) bool {
	switch reason {
	case "rateLimitExceeded", "userRateLimitExceeded", "dailyLimitExceeded":
		return true
	}
	return false
}

// maxErrorBody bounds how much of an error body is read: Google's are a
// few hundred octets; a hostile or broken server's may be anything.
const maxErrorBody = 64 << 10

// maxShown bounds each piece of text from an error body in an error
// message.
const maxShown = 300

// parseError turns a non-2xx reply into an *APIError. body is at most
// maxErrorBody octets of the reply's body.
func parseError(op string, resp *http.Response, body []byte) *APIError {
	e := &APIError{Op: op, HTTPStatus: resp.StatusCode, RetryAfter: clean(resp.Header.Get("Retry-After"), 40)}
	var eb struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Status  string `json:"status"`
			Errors  []struct {
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"errors"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &eb); err != nil {
		// Not Google's JSON: a proxy's page, or a cut body. Show its
		// start, cleaned.
		e.Message = clean(string(body), maxShown)
		return e
	}
	e.Status = clean(eb.Error.Status, 60)
	e.Message = clean(eb.Error.Message, maxShown)
	if len(eb.Error.Errors) > 0 {
		e.Reason = clean(eb.Error.Errors[0].Reason, 60)
		if e.Message == "" {
			e.Message = clean(eb.Error.Errors[0].Message, maxShown)
		}
	}
	return e
}

// clean makes text from the server fit to be part of an error message:
// invalid UTF-8, control characters (C0, DEL, C1) and the bidirectional
// controls become '?', runs of white space one space, and the result is
// cut to n runes with "..." added. (What is shown is escaped again by
// popfetch's one sanitiser; this keeps a hostile body from making an
// error message of megabytes or many lines.)
func clean(s string, n int) string {
	var b strings.Builder
	runes, space := 0, false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			space = true
			continue
		case r == utf8.RuneError && size == 1, r < ' ', r == 0x7f, r >= 0x80 && r <= 0x9f,
			r == 0x61c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			r = '?'
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
			runes++
		}
		space = false
		if runes >= n {
			b.WriteString("...")
			break
		}
		b.WriteRune(r)
		runes++
	}
	return b.String()
}

// errAmbiguous marks a failure after which Google may or may not have
// done what was asked: the connection broke after the request was sent,
// or a server error (5xx) came back. For an import, that is the case
// where the message may be in the mailbox already.
var errAmbiguous = errors.New("the outcome is unknown")
