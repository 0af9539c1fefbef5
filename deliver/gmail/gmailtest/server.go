// Package gmailtest is an in-process fake of the parts of the Gmail API
// that popfetch uses: users.messages.import (multipart media upload),
// users.labels.list and users.labels.create, and users.messages.list with
// an rfc822msgid: query. It checks each request against Google's
// documented REST contract and answers as the reference says the API
// answers, with faults on demand (rate limits, server errors, refused
// tokens, slow replies, connections dropped mid-upload or before the
// reply, hostile error bodies).
//
// Every check and every answer names, in a comment, the page of Google's
// Gmail API reference (developers.google.com/workspace/gmail/api) and the
// field it follows: "import" is the method page users.messages.import,
// "labels.list", "labels.create", "messages.list" likewise, "Label" and
// "Message" the resource pages, "uploads" the guide "Uploading
// attachments", "errors" the guide "Resolve errors". Where the reference
// is silent and the fake does what Google is known to do, the comment
// says so.
package gmailtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Token is the access token the fake accepts unless told otherwise.
const Token = "ya29.fake-token"

// FaultKind is a way for a request to fail.
type FaultKind int

// The faults.
const (
	// Fault429 answers 429 RESOURCE_EXHAUSTED, with Retry-After if the
	// Fault gives one ("errors": 429 Too Many Requests).
	Fault429 FaultKind = iota + 1
	// Fault403Rate answers 403 with reason userRateLimitExceeded
	// ("errors": 403 user rate limit exceeded).
	Fault403Rate
	// Fault500 answers 500 INTERNAL, having done nothing ("errors": 5xx).
	Fault500
	// Fault500Done does what was asked, then answers 500: a server error
	// after the fact, which the reference allows for ("errors": 5xx,
	// the request's outcome is unknown).
	Fault500Done
	// Fault401 refuses the token, whatever it is ("errors": 401
	// Invalid Credentials, reason authError).
	Fault401
	// FaultSlow waits Delay before handling the request.
	FaultSlow
	// FaultDrop reads part of the uploaded body, then closes the
	// connection: nothing is stored.
	FaultDrop
	// FaultLoseReply does what was asked (stores the message), then
	// closes the connection before replying: the crash case.
	FaultLoseReply
	// FaultHostile answers 500 with Body as the error body (control
	// characters, terminal escapes, megabytes).
	FaultHostile
	// Fault403Scope answers 403 PERMISSION_DENIED, reason
	// insufficientPermissions: the token lacks a scope the method
	// needs (each method's "Authorization scopes").
	Fault403Scope
)

// A Fault is applied to the next request for Op ("import", "labels.list",
// "labels.create", "messages.list"; "" matches any).
type Fault struct {
	Op         string
	Kind       FaultKind
	RetryAfter string        // Fault429: the Retry-After header
	Delay      time.Duration // FaultSlow
	Body       string        // FaultHostile
}

// Label is a label as the Label resource describes it.
type Label struct {
	ID                    string `json:"id"`
	Name                  string `json:"name"`
	Type                  string `json:"type"`
	MessageListVisibility string `json:"messageListVisibility,omitempty"`
	LabelListVisibility   string `json:"labelListVisibility,omitempty"`
}

// Message is a message stored by an import.
type Message struct {
	ID                 string
	ThreadID           string
	LabelIDs           []string
	Raw                []byte // as uploaded (nil after SetDiscardBodies)
	Size               int64
	SHA256             [32]byte
	MessageID          string // the Message-ID header, with its brackets
	InternalDateSource string
	NeverMarkSpam      bool
}

// Server is the fake. Its URL goes into the client's BaseURL.
type Server struct {
	*httptest.Server

	mu         sync.Mutex
	tokens     map[string]bool
	labels     []Label
	messages   []*Message
	faults     []Fault
	ops        []string
	violations []string
	nextID     int
	discard    bool
	protos     []string
	searches   int // messages.list requests answered
	found      int // of those, the ones that found a message
	searchLag  time.Duration
	importedAt map[*Message]time.Time
}

// Searches returns how many searches (messages.list) the fake answered,
// and how many of them found a message.
func (s *Server) Searches() (searches, found int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.searches, s.found
}

// Protos returns the HTTP version of each request received, in order.
func (s *Server) Protos() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.protos...)
}

// SetSearchLag makes a message imported less than d ago invisible to a
// search (messages.list), as a search index that has not caught up yet.
// Google documents no bound on that lag, nor that there is none.
func (s *Server) SetSearchLag(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.searchLag = d
}

// SetDiscardBodies makes the fake keep only the size and SHA-256 of the
// messages it stores, so that a test can measure the client's memory.
func (s *Server) SetDiscardBodies(discard bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.discard = discard
}

// New starts a fake with Gmail's system labels and no user labels,
// accepting Token. Close it when done.
func New() *Server {
	s := &Server{tokens: map[string]bool{Token: true}}
	// "Label": system labels have type "system" and, as Google's guide
	// "Manage labels" lists them, ids equal to their names.
	for _, id := range []string{"INBOX", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT", "SENT", "DRAFT",
		"CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES", "CATEGORY_FORUMS"} {
		s.labels = append(s.labels, Label{ID: id, Name: id, Type: "system"})
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// NewTLS is New over TLS with HTTP/2, as Google serves the API. Its
// Client() trusts its certificate.
func NewTLS() *Server {
	s := &Server{tokens: map[string]bool{Token: true}}
	s.labels = New().closed().labels
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.Server.EnableHTTP2 = true
	s.Server.StartTLS()
	return s
}

// closed closes s and returns it (for its initial labels).
func (s *Server) closed() *Server {
	s.Close()
	return s
}

// SetTokens replaces the accepted tokens.
func (s *Server) SetTokens(tokens ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]bool{}
	for _, t := range tokens {
		s.tokens[t] = true
	}
}

// Inject queues faults, applied in order to the requests they match.
func (s *Server) Inject(f ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f...)
}

// AddLabel adds a user label, as if made in Gmail's settings.
func (s *Server) AddLabel(name string) Label {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addLabel(name)
}

func (s *Server) addLabel(name string) Label {
	s.nextID++
	// "Label": user labels' ids are opaque; Gmail's look like Label_N.
	l := Label{ID: fmt.Sprintf("Label_%d", s.nextID), Name: name, Type: "user",
		MessageListVisibility: "show", LabelListVisibility: "labelShow"}
	s.labels = append(s.labels, l)
	return l
}

// AddMessage stores a message as if it had reached the mailbox another
// way (by SMTP, say).
func (s *Server) AddMessage(raw []byte, labelIDs ...string) *Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store(raw, labelIDs, "receivedTime", false)
}

// Messages returns the stored messages in the order they arrived.
func (s *Server) Messages() []*Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Message(nil), s.messages...)
}

// Labels returns the mailbox's labels.
func (s *Server) Labels() []Label {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Label(nil), s.labels...)
}

// Ops returns the operation of each request received, in order
// ("import", "labels.list", ...): the round trips a client made.
func (s *Server) Ops() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ops...)
}

// Violations returns what requests did against the contract: a test
// asserts there are none.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// route names the operation of a request, or "" with a violation.
func route(r *http.Request) (op, user string) {
	p := r.URL.Path
	switch {
	// "import": the upload URI is POST /upload/gmail/v1/users/{userId}/messages/import.
	case strings.HasPrefix(p, "/upload/gmail/v1/users/") && strings.HasSuffix(p, "/messages/import"):
		return "import", strings.TrimSuffix(strings.TrimPrefix(p, "/upload/gmail/v1/users/"), "/messages/import")
	// "labels.list" is GET and "labels.create" POST /gmail/v1/users/{userId}/labels.
	case strings.HasPrefix(p, "/gmail/v1/users/") && strings.HasSuffix(p, "/labels"):
		user = strings.TrimSuffix(strings.TrimPrefix(p, "/gmail/v1/users/"), "/labels")
		if r.Method == http.MethodPost {
			return "labels.create", user
		}
		return "labels.list", user
	// "messages.list" is GET /gmail/v1/users/{userId}/messages.
	case strings.HasPrefix(p, "/gmail/v1/users/") && strings.HasSuffix(p, "/messages"):
		return "messages.list", strings.TrimSuffix(strings.TrimPrefix(p, "/gmail/v1/users/"), "/messages")
	}
	return "", ""
}

// wantMethod is each operation's HTTP method (the "HTTP request" section
// of each method's page).
var wantMethod = map[string]string{
	"import": http.MethodPost, "labels.list": http.MethodGet,
	"labels.create": http.MethodPost, "messages.list": http.MethodGet,
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	op, user := route(r)
	s.mu.Lock()
	s.ops = append(s.ops, op)
	s.protos = append(s.protos, r.Proto)
	s.mu.Unlock()
	if op == "" {
		s.violation("no such method: %s %s", r.Method, r.URL.Path)
		writeError(w, http.StatusNotFound, "NOT_FOUND", "notFound", "Not Found")
		return
	}
	if r.Method != wantMethod[op] {
		s.violation("%s: method %s, want %s", op, r.Method, wantMethod[op])
		writeError(w, http.StatusMethodNotAllowed, "INVALID_ARGUMENT", "badRequest", "Method not allowed")
		return
	}
	// Path parameter userId: the user's address, or "me" for the user
	// the token belongs to (every method's "Path parameters").
	if user == "" || strings.Contains(user, "/") {
		s.violation("%s: bad userId %q", op, user)
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "invalidArgument", "Invalid user id")
		return
	}
	// "errors", 401: a missing or refused bearer token is answered 401
	// with reason authError.
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	valid := ok && s.tokens[tok]
	s.mu.Unlock()
	if !valid {
		writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "authError", "Invalid Credentials")
		return
	}
	if f, ok := s.fault(op); ok {
		if s.applyBefore(w, r, op, f) {
			return
		}
		switch f.Kind {
		case FaultLoseReply, Fault500Done:
			s.handle(httptest.NewRecorder(), r, op)
			if f.Kind == FaultLoseReply {
				hangUp(w)
			} else {
				writeError(w, http.StatusInternalServerError, "INTERNAL", "backendError", "Backend Error")
			}
			return
		}
	}
	s.handle(w, r, op)
}

// fault takes the first queued fault for op.
func (s *Server) fault(op string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Op == "" || f.Op == op {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
			return f, true
		}
	}
	return Fault{}, false
}

// applyBefore applies a fault that ends the request before it is handled,
// and reports whether it did.
func (s *Server) applyBefore(w http.ResponseWriter, r *http.Request, op string, f Fault) bool {
	switch f.Kind {
	case Fault429:
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		// "errors": 429 is "too many requests"; its canonical status is
		// RESOURCE_EXHAUSTED, reason rateLimitExceeded.
		writeError(w, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "rateLimitExceeded", "Too many concurrent requests for user")
	case Fault403Rate:
		writeError(w, http.StatusForbidden, "PERMISSION_DENIED", "userRateLimitExceeded", "User Rate Limit Exceeded")
	case Fault403Scope:
		writeError(w, http.StatusForbidden, "PERMISSION_DENIED", "insufficientPermissions", "Request had insufficient authentication scopes.")
	case Fault500:
		writeError(w, http.StatusInternalServerError, "INTERNAL", "backendError", "Backend Error")
	case Fault401:
		writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "authError", "Invalid Credentials")
	case FaultSlow:
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return true
		}
		return false
	case FaultDrop:
		io.CopyN(io.Discard, r.Body, max(r.ContentLength/2, 1))
		hangUp(w)
	case FaultHostile:
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, f.Body)
	default:
		return false
	}
	return true
}

// hangUp closes the connection without a reply.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok { // HTTP/2: end the stream with an error instead
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		conn.Close()
	}
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request, op string) {
	switch op {
	case "import":
		s.handleImport(w, r)
	case "labels.list":
		// "labels.list": the reply has one field, "labels", a list of
		// Label resources, system and user labels alike.
		s.mu.Lock()
		out := struct {
			Labels []Label `json:"labels"`
		}{append([]Label(nil), s.labels...)}
		s.mu.Unlock()
		writeJSON(w, out)
	case "labels.create":
		s.handleCreateLabel(w, r)
	case "messages.list":
		s.handleList(w, r)
	}
}

// maxImport is the import method's limit ("import": 150 MB at most).
const maxImport = 150 << 20

func (s *Server) handleImport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	// body is set below; a request whose body broke off (the client
	// died or hung up mid-upload) is not a malformed one: it is dropped,
	// nothing stored, as a server does with a request it never got whole.
	var body *cutReader
	bad := func(format string, args ...any) {
		if body != nil && body.err != nil {
			hangUp(w)
			return
		}
		msg := fmt.Sprintf(format, args...)
		s.violation("import: %s", msg)
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "badRequest", msg)
	}
	// "uploads": the upload URI needs uploadType; this fake takes the
	// one popfetch uses, multipart (metadata and media in one request).
	if q.Get("uploadType") != "multipart" {
		bad("uploadType %q (the fake takes multipart)", q.Get("uploadType"))
		return
	}
	// "import", query parameter internalDateSource: enum
	// InternalDateSource, receivedTime (the default) or dateHeader.
	ids := q.Get("internalDateSource")
	if ids != "" && ids != "receivedTime" && ids != "dateHeader" {
		bad("internalDateSource %q", ids)
		return
	}
	// "import", query parameters neverMarkSpam, processForCalendar,
	// deleted: booleans.
	var flags [3]bool
	for i, name := range []string{"neverMarkSpam", "processForCalendar", "deleted"} {
		if v := q.Get(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil || (v != "true" && v != "false") {
				bad("%s %q is not a boolean", name, v)
				return
			}
			flags[i] = b
		}
	}
	// "uploads", multipart upload: the Content-Length of the whole body
	// is required, and the body's type multipart/related.
	if r.ContentLength < 0 {
		bad("no Content-Length")
		return
	}
	if r.ContentLength > maxImport+1<<20 {
		writeError(w, http.StatusRequestEntityTooLarge, "INVALID_ARGUMENT", "uploadTooLarge", "Request too large")
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" || params["boundary"] == "" {
		bad("Content-Type %q, want multipart/related with a boundary", r.Header.Get("Content-Type"))
		return
	}
	body = &cutReader{r: http.MaxBytesReader(w, r.Body, r.ContentLength)}
	mr := multipart.NewReader(body, params["boundary"])
	// "uploads", multipart: two parts, the metadata first (JSON, a
	// Message resource), then the media.
	meta, err := mr.NextRawPart()
	if err != nil {
		bad("no metadata part: %v", err)
		return
	}
	if ct, _, _ := mime.ParseMediaType(meta.Header.Get("Content-Type")); ct != "application/json" {
		bad("the first part is %q, want application/json", meta.Header.Get("Content-Type"))
		return
	}
	var m struct {
		LabelIDs []string `json:"labelIds"`
		ThreadID string   `json:"threadId"`
		Raw      string   `json:"raw"`
	}
	dec := json.NewDecoder(io.LimitReader(meta, 1<<20))
	dec.DisallowUnknownFields() // the Message resource's writable fields only
	if err := dec.Decode(&m); err != nil {
		bad("metadata: %v", err)
		return
	}
	// "Message": raw is the message itself, base64url, for requests
	// without media; with a media upload the message is the media part.
	if m.Raw != "" {
		bad("metadata has raw as well as a media part")
		return
	}
	media, err := mr.NextRawPart()
	if err != nil {
		bad("no media part: %v", err)
		return
	}
	// "import", media upload: the accepted media MIME type is message/*.
	if ct, _, _ := mime.ParseMediaType(media.Header.Get("Content-Type")); !strings.HasPrefix(ct, "message/") {
		bad("the media part is %q, want message/rfc822", media.Header.Get("Content-Type"))
		return
	}
	s.mu.Lock()
	discard := s.discard
	s.mu.Unlock()
	h := sha256.New()
	var raw []byte
	var size int64
	if discard {
		// Keep the header for the checks below, hash the rest.
		head := make([]byte, 64<<10)
		n, _ := io.ReadFull(media, head)
		raw = head[:n]
		h.Write(raw)
		m, err := io.Copy(h, io.LimitReader(media, maxImport+1))
		size = int64(n) + m
		if err != nil {
			hangUp(w)
			return
		}
	} else {
		raw, err = io.ReadAll(io.LimitReader(media, maxImport+1))
		if err != nil {
			bad("media: %v", err) // the upload broke off, or a malformed part
			return
		}
		h.Write(raw)
		size = int64(len(raw))
	}
	if size > maxImport {
		writeError(w, http.StatusRequestEntityTooLarge, "INVALID_ARGUMENT", "uploadTooLarge", "Message too large")
		return
	}
	if _, err := mr.NextRawPart(); err != io.EOF {
		bad("more than two parts, or no closing boundary: %v", err)
		return
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		hangUp(w)
		return
	}
	if _, err := mail.ReadMessage(bytes.NewReader(raw)); err != nil && !discard {
		// Known behaviour, not on the reference page: a body that is
		// not an RFC 822 message is refused with 400.
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "invalidArgument", "Invalid message: "+err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range m.LabelIDs {
		if !s.hasLabel(id) {
			// Known behaviour: an unknown label id is refused with 400
			// "Invalid label".
			writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "invalidArgument", "Invalid label: "+id)
			return
		}
	}
	msg := s.store(raw, m.LabelIDs, ids, flags[0])
	msg.Size = size
	h.Sum(msg.SHA256[:0])
	if discard {
		msg.Raw = nil
	}
	// "import", response body: a Message resource (id, threadId and
	// labelIds among its fields).
	writeJSON(w, struct {
		ID       string   `json:"id"`
		ThreadID string   `json:"threadId"`
		LabelIDs []string `json:"labelIds,omitempty"`
	}{msg.ID, msg.ThreadID, msg.LabelIDs})
}

// cutReader is a request body that remembers a failure to read it: the
// connection closed before Content-Length octets came (net/http says
// io.ErrUnexpectedEOF).
type cutReader struct {
	r   io.Reader
	err error
}

func (c *cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	var tooLarge *http.MaxBytesError
	if err != nil && err != io.EOF && !errors.As(err, &tooLarge) && c.err == nil {
		c.err = err
	}
	return n, err
}

// store keeps a message; s.mu is held. A message with the header
// "X-Fake-Spam: yes" is classified as spam unless neverMarkSpam, standing
// for Gmail's classifier: it gets SPAM instead of INBOX ("import":
// neverMarkSpam overrides the classifier's decision).
func (s *Server) store(raw []byte, labelIDs []string, dateSource string, neverSpam bool) *Message {
	s.nextID++
	id := fmt.Sprintf("%016x", 0x18c0000000000000+s.nextID)
	msg := &Message{ID: id, ThreadID: id, Raw: raw, Size: int64(len(raw)), SHA256: sha256.Sum256(raw),
		InternalDateSource: dateSource, NeverMarkSpam: neverSpam}
	labels := append([]string(nil), labelIDs...)
	if pm, err := mail.ReadMessage(bytes.NewReader(raw)); err == nil {
		msg.MessageID = strings.TrimSpace(pm.Header.Get("Message-Id"))
		if pm.Header.Get("X-Fake-Spam") == "yes" && !neverSpam {
			labels = nil
			for _, l := range labelIDs {
				if l != "INBOX" {
					labels = append(labels, l)
				}
			}
			labels = append(labels, "SPAM")
		}
	}
	msg.LabelIDs = labels
	s.messages = append(s.messages, msg)
	if s.importedAt == nil {
		s.importedAt = map[*Message]time.Time{}
	}
	s.importedAt[msg] = time.Now()
	return msg
}

func (s *Server) hasLabel(id string) bool {
	for _, l := range s.labels {
		if l.ID == id {
			return true
		}
	}
	return false
}

func (s *Server) handleCreateLabel(w http.ResponseWriter, r *http.Request) {
	// "labels.create": the request body is a Label resource.
	var l Label
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		s.violation("labels.create: body: %v", err)
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "badRequest", "Invalid JSON payload")
		return
	}
	// "Label": name is the display name; id and type are set by Gmail
	// (type "user" for created labels).
	if l.ID != "" || (l.Type != "" && l.Type != "user") || strings.TrimSpace(l.Name) == "" {
		s.violation("labels.create: id %q, type %q, name %q", l.ID, l.Type, l.Name)
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "invalidArgument", "Invalid label")
		return
	}
	// "Label": messageListVisibility is show or hide;
	// labelListVisibility labelShow, labelShowIfUnread or labelHide.
	if v := l.MessageListVisibility; v != "" && v != "show" && v != "hide" {
		s.violation("labels.create: messageListVisibility %q", v)
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "invalidArgument", "Invalid messageListVisibility")
		return
	}
	if v := l.LabelListVisibility; v != "" && v != "labelShow" && v != "labelShowIfUnread" && v != "labelHide" {
		s.violation("labels.create: labelListVisibility %q", v)
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "invalidArgument", "Invalid labelListVisibility")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, have := range s.labels {
		if strings.EqualFold(have.Name, l.Name) {
			// Known behaviour, not on the reference page: a name that
			// is taken (whatever its case, or a system label's) is
			// refused with 409 "Label name exists or conflicts".
			writeError(w, http.StatusConflict, "ABORTED", "aborted", "Label name exists or conflicts")
			return
		}
	}
	created := s.addLabel(l.Name)
	if l.MessageListVisibility != "" {
		created.MessageListVisibility = l.MessageListVisibility
	}
	if l.LabelListVisibility != "" {
		created.LabelListVisibility = l.LabelListVisibility
	}
	s.labels[len(s.labels)-1] = created
	// "labels.create": the reply is the new Label.
	writeJSON(w, created)
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	// "messages.list", q: Gmail search syntax, with
	// rfc822msgid:<id> as the reference's own example. The fake
	// understands that operator alone.
	query := q.Get("q")
	want, ok := strings.CutPrefix(query, "rfc822msgid:")
	if !ok || want == "" || strings.ContainsAny(want, " \t\"") {
		s.violation("messages.list: q %q (the fake takes rfc822msgid:ID)", query)
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "invalidArgument", "Invalid query")
		return
	}
	want = strings.TrimSuffix(strings.TrimPrefix(want, "<"), ">")
	// "messages.list", includeSpamTrash: a boolean; without it, SPAM
	// and TRASH are left out.
	spamTrash := false
	if v := q.Get("includeSpamTrash"); v != "" {
		if v != "true" && v != "false" {
			s.violation("messages.list: includeSpamTrash %q", v)
			writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "invalidArgument", "Invalid includeSpamTrash")
			return
		}
		spamTrash = v == "true"
	}
	// "messages.list", maxResults: at most 500 (100 by default).
	limit := 100
	if v := q.Get("maxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			s.violation("messages.list: maxResults %q", v)
			writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "invalidArgument", "Invalid maxResults")
			return
		}
		limit = n
	}
	type item struct {
		ID       string `json:"id"`
		ThreadID string `json:"threadId"`
	}
	// "messages.list", response: messages[] (each with id and threadId
	// only), nextPageToken, resultSizeEstimate. Like every Google JSON
	// reply, an empty list is left out.
	var out struct {
		Messages           []item `json:"messages,omitempty"`
		ResultSizeEstimate int    `json:"resultSizeEstimate"`
	}
	s.mu.Lock()
	for i := len(s.messages) - 1; i >= 0; i-- { // newest first, as Gmail lists
		m := s.messages[i]
		if strings.TrimSuffix(strings.TrimPrefix(m.MessageID, "<"), ">") != want {
			continue
		}
		if !spamTrash && (contains(m.LabelIDs, "SPAM") || contains(m.LabelIDs, "TRASH")) {
			continue
		}
		if time.Since(s.importedAt[m]) < s.searchLag {
			continue // not indexed yet
		}
		if len(out.Messages) < limit {
			out.Messages = append(out.Messages, item{m.ID, m.ThreadID})
		}
		out.ResultSizeEstimate++
	}
	s.searches++
	if len(out.Messages) > 0 {
		s.found++
	}
	s.mu.Unlock()
	writeJSON(w, out)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (s *Server) violation(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	json.NewEncoder(w).Encode(v)
}

// writeError writes Google's error body ("errors": an object "error"
// with code, message, a list errors of {domain, reason, message}, and
// status, the canonical error name).
func writeError(w http.ResponseWriter, code int, status, reason, message string) {
	type item struct {
		Message string `json:"message"`
		Domain  string `json:"domain"`
		Reason  string `json:"reason"`
	}
	var body struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Errors  []item `json:"errors"`
			Status  string `json:"status"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message, body.Error.Status = code, message, status
	body.Error.Errors = []item{{message, "global", reason}}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(body)
}
