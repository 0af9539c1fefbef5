// Package gmail delivers messages into a Gmail mailbox through the Gmail
// API's users.messages.import, which runs Gmail's own spam and phishing
// classification on each message as if it had come by SMTP (an IMAP
// APPEND does not). It speaks plain HTTP with an OAuth 2.0 access token;
// no Google client library is used.
//
// The Client is the REST client (import, labels, search by Message-ID);
// Target is the deliver.Deliverer built on it. The package gmailtest
// holds an in-process fake of the API for tests.
//
// References in comments name pages of Google's Gmail API reference
// (developers.google.com/workspace/gmail/api): "import" is the method
// page users.messages.import, "labels.list", "labels.create",
// "messages.list" likewise; "uploads" is the guide "Uploading
// attachments" (upload types), "errors" the guide "Resolve errors",
// "quota" the page "Usage limits".
package gmail

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultBaseURL is the Gmail API's service endpoint.
const DefaultBaseURL = "https://gmail.googleapis.com"

// Defaults for the Client's bounds.
const (
	// DefaultTimeout bounds a request without a message to upload, and
	// the wait for the reply to one that has.
	DefaultTimeout = 2 * time.Minute
	// DefaultMaxAttempts is how often a call is tried when Google says
	// to slow down or fails itself (429, 5xx).
	DefaultMaxAttempts = 5
	// DefaultMaxWait bounds the time one call spends waiting between
	// its attempts: a longer Retry-After gives up at once, so that the
	// message is left for the next poll instead of holding this one.
	DefaultMaxWait = 2 * time.Minute
	// MaxMessageSize is the largest message import takes ("import":
	// the method's description gives 150 MB as the maximum size).
	MaxMessageSize = 150 << 20
	// minUploadRate is the slowest upload tolerated: a request's time
	// bound grows by the message's size at this rate.
	minUploadRate = 32 << 10
	// maxReply bounds a successful reply's body (a Message, a list of
	// labels or of message ids: a few kilobytes).
	maxReply = 4 << 20
)

// Client calls the Gmail API for one user. Its zero value is not usable:
// Token must be set. A Client is safe for use by several goroutines.
type Client struct {
	// BaseURL is the service endpoint; "" means DefaultBaseURL. Tests
	// point it at a gmailtest.Server.
	BaseURL string
	// User is the mailbox's user id in the request paths; "" means "me",
	// the user the token belongs to ("import": path parameter userId).
	User string
	// Token returns an OAuth 2.0 access token with the needed scopes.
	Token func(context.Context) (string, error)
	// TokenRefused, if set, is called when the API refuses a token
	// (401), so that the next call of Token gets a new one. A request is
	// retried once with the new token.
	TokenRefused func()
	// HTTP is the client requests are made with; nil means one with
	// bounded dial, TLS handshake and reply waits, TLS 1.2 at least, and
	// no redirects followed.
	HTTP *http.Client
	// Timeout bounds each request (for an import, plus the time to send
	// the message at 32 KiB/s); 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxAttempts and MaxWait bound the retries of one call; 0 means
	// DefaultMaxAttempts and DefaultMaxWait.
	MaxAttempts int
	MaxWait     time.Duration
	// Sleep waits between attempts; nil means a timer. Tests replace it
	// to record the waits.
	Sleep func(context.Context, time.Duration) error

	once sync.Once
	hc   *http.Client // HTTP, or the client made for a nil HTTP
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c *Client) httpClient() *http.Client {
	c.once.Do(func() {
		c.hc = c.HTTP
		if c.hc == nil {
			c.hc = NewHTTPClient(c.timeout())
		}
	})
	return c.hc
}

// CloseIdleConnections closes the connections kept open for later
// requests.
func (c *Client) CloseIdleConnections() { c.httpClient().CloseIdleConnections() }

// NewHTTPClient returns the http.Client a Client uses when its HTTP is
// nil: dialing and the TLS handshake bounded to 30 s, the wait for a
// reply's header after the request is sent to timeout, TLS 1.2 or later,
// redirects not followed (the API does not redirect; a redirect would
// carry the token elsewhere).
func NewHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: timeout,
			ExpectContinueTimeout: time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (c *Client) base() string {
	if c.BaseURL != "" {
		return strings.TrimRight(c.BaseURL, "/")
	}
	return DefaultBaseURL
}

func (c *Client) user() string {
	if c.User != "" {
		return url.PathEscape(c.User)
	}
	return "me"
}

// Label is a Gmail label, as the Label resource of labels.list and
// labels.create describes it (the fields popfetch uses).
type Label struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
	// Type is "system" (INBOX, UNREAD, SPAM, ...) or "user".
	Type string `json:"type,omitempty"`
	// MessageListVisibility ("show", "hide") and LabelListVisibility
	// ("labelShow", "labelShowIfUnread", "labelHide") are set when a
	// label is created.
	MessageListVisibility string `json:"messageListVisibility,omitempty"`
	LabelListVisibility   string `json:"labelListVisibility,omitempty"`
}

// Message is what the API says of a message ("import": the response is a
// Message resource; "messages.list": each item carries only id and
// threadId).
type Message struct {
	ID       string   `json:"id"`
	ThreadID string   `json:"threadId,omitempty"`
	LabelIDs []string `json:"labelIds,omitempty"`
}

// Labels lists the mailbox's labels, system and user ("labels.list":
// GET .../users/{userId}/labels, the reply's field "labels").
func (c *Client) Labels(ctx context.Context) ([]Label, error) {
	var out struct {
		Labels []Label `json:"labels"`
	}
	err := c.call(ctx, "labels.list", func() (*http.Request, error) {
		return http.NewRequest(http.MethodGet, c.base()+"/gmail/v1/users/"+c.user()+"/labels", nil)
	}, &out)
	return out.Labels, err
}

// CreateLabel creates a user label, shown in the label list and the
// message list ("labels.create": POST .../users/{userId}/labels, a Label
// as the body, the new Label as the reply). A label of that name that
// exists already is an *APIError with HTTPStatus 409.
func (c *Client) CreateLabel(ctx context.Context, name string) (*Label, error) {
	body, err := json.Marshal(Label{Name: name, MessageListVisibility: "show", LabelListVisibility: "labelShow"})
	if err != nil {
		return nil, err
	}
	var out Label
	err = c.call(ctx, "labels.create", func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, c.base()+"/gmail/v1/users/"+c.user()+"/labels", bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json; charset=UTF-8")
		}
		return req, err
	}, &out)
	if err != nil {
		return nil, err
	}
	if out.ID == "" {
		return nil, fmt.Errorf("gmail labels.create: the reply has no label id")
	}
	return &out, nil
}

// FindByMessageID returns the ids of the messages in the mailbox, spam
// and trash included, whose Message-ID header is id (given without angle
// brackets): "messages.list" with q=rfc822msgid:<id> (the reference's own
// example of q uses this operator) and includeSpamTrash=true (an import
// classified as spam is in SPAM). At most 10 are returned.
func (c *Client) FindByMessageID(ctx context.Context, id string) ([]string, error) {
	if !searchable(id) {
		return nil, fmt.Errorf("gmail: Message-ID %q cannot be searched for", clean(id, 80))
	}
	q := url.Values{}
	q.Set("q", "rfc822msgid:<"+id+">")
	q.Set("includeSpamTrash", "true")
	q.Set("maxResults", "10")
	var out struct {
		Messages []Message `json:"messages"`
	}
	err := c.call(ctx, "messages.list", func() (*http.Request, error) {
		return http.NewRequest(http.MethodGet, c.base()+"/gmail/v1/users/"+c.user()+"/messages?"+q.Encode(), nil)
	}, &out)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(out.Messages))
	for _, m := range out.Messages {
		if m.ID != "" {
			ids = append(ids, m.ID)
		}
	}
	return ids, nil
}

// ImportOptions are the settings of one import.
type ImportOptions struct {
	// LabelIDs are the ids (not names) of the labels the message gets:
	// the Message resource's labelIds, sent as the upload's metadata.
	LabelIDs []string
	// NeverMarkSpam sets the query parameter neverMarkSpam ("import").
	NeverMarkSpam bool
	// MessageID is the message's Message-ID without angle brackets, or
	// "". When an attempt ends without an answer (the connection broke
	// after the message was sent, or a 5xx), the message may have been
	// imported all the same: before trying again, Import looks for it by
	// this id and, if found, takes it as imported. Without one, a retry
	// after such a failure may import the message twice.
	MessageID string
}

// Import imports the message of size octets read from msg (RFC 822, CRLF
// line endings) into the mailbox ("import": POST to the upload URI
// /upload/gmail/v1/users/{userId}/messages/import).
//
// The upload is uploadType=multipart ("uploads"): one request whose body
// is multipart/related, a JSON part with the metadata (labelIds) and a
// message/rfc822 part with the message, streamed from msg with the exact
// Content-Length, never held in memory. A simple upload
// (uploadType=media) cannot carry labelIds, so the message would arrive
// with no label, not even INBOX, and a second call (and scope) would be
// needed to label it; a resumable upload costs a second round trip per
// message, which buys nothing for mail-sized messages that are resent
// whole from the local copy after a failure anyway.
//
// The internal date is taken from the message's Date header
// (internalDateSource=dateHeader), so that Gmail sorts the mail as it was
// sent, not as it was fetched.
func (c *Client) Import(ctx context.Context, msg io.ReaderAt, size int64, opt ImportOptions) (*Message, error) {
	if size > MaxMessageSize {
		return nil, &APIError{Op: "import", HTTPStatus: http.StatusRequestEntityTooLarge,
			Message: fmt.Sprintf("the message is %d octets, over the import limit of %d", size, MaxMessageSize)}
	}
	meta, err := json.Marshal(struct {
		LabelIDs []string `json:"labelIds"`
	}{opt.LabelIDs})
	if err != nil {
		return nil, err
	}
	boundary := newBoundary()
	head := "--" + boundary + "\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n" + string(meta) +
		"\r\n--" + boundary + "\r\nContent-Type: message/rfc822\r\n\r\n"
	tail := "\r\n--" + boundary + "--\r\n"
	q := url.Values{}
	q.Set("uploadType", "multipart")
	q.Set("internalDateSource", "dateHeader")
	q.Set("neverMarkSpam", strconv.FormatBool(opt.NeverMarkSpam))
	target := c.base() + "/upload/gmail/v1/users/" + c.user() + "/messages/import?" + q.Encode()
	newBody := func() io.Reader {
		return io.MultiReader(strings.NewReader(head), io.NewSectionReader(msg, 0, size), strings.NewReader(tail))
	}
	build := func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, target, newBody())
		if err != nil {
			return nil, err
		}
		req.ContentLength = int64(len(head)) + size + int64(len(tail))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(newBody()), nil }
		req.Header.Set("Content-Type", `multipart/related; boundary="`+boundary+`"`)
		return req, nil
	}
	r := c.retrier()
	r.extra = time.Duration(size/minUploadRate) * time.Second
	for {
		var out Message
		err := r.once(ctx, "import", build, &out)
		if err == nil {
			if out.ID == "" {
				return nil, fmt.Errorf("gmail import: the reply has no message id")
			}
			return &out, nil
		}
		if errors.Is(err, errAmbiguous) && opt.MessageID != "" && searchable(opt.MessageID) {
			// It may be in: look before sending it again. The search
			// is made after the wait, which gives Gmail's index time
			// to catch up with an import that did happen.
			if werr := r.wait(ctx, err); werr != nil {
				return nil, werr
			}
			ids, ferr := c.FindByMessageID(ctx, opt.MessageID)
			if ferr != nil {
				return nil, fmt.Errorf("%w; looking for it by Message-ID failed too: %v", err, ferr)
			}
			if len(ids) > 0 {
				return &Message{ID: ids[0]}, nil
			}
			continue
		}
		if werr := r.wait(ctx, err); werr != nil {
			return nil, werr
		}
	}
}

// call makes a request, retrying as the retrier allows. build returns a
// new request each time.
func (c *Client) call(ctx context.Context, op string, build func() (*http.Request, error), out any) error {
	r := c.retrier()
	for {
		err := r.once(ctx, op, build, out)
		if err == nil {
			return nil
		}
		if werr := r.wait(ctx, err); werr != nil {
			return werr
		}
	}
}

func (c *Client) retrier() *retrier {
	r := &retrier{c: c, maxAttempts: c.MaxAttempts, maxWait: c.MaxWait}
	if r.maxAttempts <= 0 {
		r.maxAttempts = DefaultMaxAttempts
	}
	if r.maxWait <= 0 {
		r.maxWait = DefaultMaxWait
	}
	return r
}

// retrier keeps the count of one call's attempts and waits.
type retrier struct {
	c           *Client
	maxAttempts int
	maxWait     time.Duration
	extra       time.Duration // added to the request's time bound
	attempts    int
	waited      time.Duration
	refreshed   bool
	pending     time.Duration // the wait wait() is to make, set by once
}

// once makes one attempt. It returns nil on success (the reply decoded
// into out), an error that wait may retry, or a final one.
func (r *retrier) once(ctx context.Context, op string, build func() (*http.Request, error), out any) error {
	r.attempts++
	r.pending = 0
	c := r.c
	if c.Token == nil {
		return &final{fmt.Errorf("gmail %s: no OAuth 2.0 token source", op)}
	}
	tok, err := c.Token(ctx)
	if err != nil {
		return &final{fmt.Errorf("gmail %s: getting a token: %w", op, err)}
	}
	req, err := build()
	if err != nil {
		return &final{err}
	}
	rctx, cancel := context.WithTimeout(ctx, c.timeout()+r.extra)
	defer cancel()
	req = req.WithContext(rctx)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return &final{fmt.Errorf("gmail %s: %w", op, ctx.Err())}
		}
		var ne *net.OpError
		r.pending = backoff(r.attempts)
		if errors.As(err, &ne) && ne.Op == "dial" {
			return fmt.Errorf("gmail %s: %w", opName(req), err) // nothing was sent
		}
		return fmt.Errorf("gmail %s: %w (%w)", opName(req), err, errAmbiguous)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		dec := json.NewDecoder(io.LimitReader(resp.Body, maxReply))
		if err := dec.Decode(out); err != nil {
			if ctx.Err() != nil {
				return &final{fmt.Errorf("gmail %s: %w", op, ctx.Err())}
			}
			r.pending = backoff(r.attempts)
			return fmt.Errorf("gmail %s: reading the reply: %w (%w)", op, err, errAmbiguous)
		}
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	ae := parseError(op, resp, body)
	if resp.StatusCode == http.StatusUnauthorized && !r.refreshed && c.TokenRefused != nil {
		c.TokenRefused()
		r.refreshed = true
		r.attempts-- // the retry with a new token is not one of the bounded attempts
		return ae
	}
	if !ae.retryNow() {
		return &final{ae}
	}
	r.pending = backoff(r.attempts)
	if d, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
		r.pending = d
	}
	if resp.StatusCode >= 500 {
		return fmt.Errorf("%w (%w)", ae, errAmbiguous)
	}
	return ae
}

func opName(req *http.Request) string { return req.Method + " " + req.URL.Path }

// final wraps an error that is not to be retried.
type final struct{ err error }

func (f *final) Error() string { return f.err.Error() }
func (f *final) Unwrap() error { return f.err }

// wait decides whether err may be retried and waits if so; it returns nil
// to go on, or the error to give up with.
func (r *retrier) wait(ctx context.Context, err error) error {
	var f *final
	if errors.As(err, &f) {
		return f.err
	}
	if r.attempts >= r.maxAttempts {
		return fmt.Errorf("%w (gave up after %d attempts)", err, r.attempts)
	}
	d := r.pending // 0 only to try a new token at once
	if r.waited+d > r.maxWait {
		return fmt.Errorf("%w (not waiting %v more: the bound is %v a call)", err, d.Round(time.Second), r.maxWait)
	}
	r.waited += d
	if d == 0 {
		return nil
	}
	sleep := r.c.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	if err := sleep(ctx, d); err != nil {
		return err
	}
	return nil
}

// backoff is the wait before attempt n+1: 1 s, 2 s, 4 s, ... up to 32 s,
// with up to a quarter added at random so that several clients spread
// out (the exponential backoff the "errors" guide asks for).
func backoff(n int) time.Duration {
	d := time.Second << min(n-1, 5)
	j, err := rand.Int(rand.Reader, big.NewInt(int64(d/4)+1))
	if err == nil {
		d += time.Duration(j.Int64())
	}
	return d
}

// retryAfter reads a Retry-After header (RFC 9110 section 10.2.3): a
// number of seconds or an HTTP date.
func retryAfter(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		if n > 86400 {
			n = 86400
		}
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := time.Until(t)
		if d < 0 {
			d = 0
		}
		return min(d, 24*time.Hour), true
	}
	return 0, false
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newBoundary returns a multipart boundary of 128 random bits: a message
// cannot contain it except by chance, and nobody can know it in advance
// to put it in a message.
func newBoundary() string {
	var b [16]byte
	rand.Read(b[:])
	return "popfetch-" + hex.EncodeToString(b[:])
}

// searchable reports whether a Message-ID (without brackets) can be put
// in a search query as it is: printable ASCII without white space,
// quotes, parentheses, brackets or braces, at most 500 octets.
func searchable(id string) bool {
	if id == "" || len(id) > 500 {
		return false
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte(`"()<>[]{}\`, b) >= 0 {
			return false
		}
	}
	return true
}
