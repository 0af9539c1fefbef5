package gmailtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFakeChecksRequests: the fake refuses, and records as a violation,
// requests that break the documented contract, so that a client test
// cannot pass by leaning on a lenient fake.
func TestFakeChecksRequests(t *testing.T) {
	const msg = "Message-ID: <a@b>\r\nSubject: x\r\n\r\nbody\r\n"
	multipartBody := func(metaType, meta, mediaType string) string {
		return "--B\r\nContent-Type: " + metaType + "\r\n\r\n" + meta + "\r\n--B\r\nContent-Type: " + mediaType + "\r\n\r\n" + msg + "\r\n--B--\r\n"
	}
	good := multipartBody("application/json; charset=UTF-8", `{"labelIds":["INBOX"]}`, "message/rfc822")
	tests := []struct {
		name, method, path, ctype, body string
		token                           string
		chunked                         bool
		wantStatus                      int
		violation                       bool
	}{
		{name: "good import", method: "POST", path: "/upload/gmail/v1/users/me/messages/import?uploadType=multipart&internalDateSource=dateHeader&neverMarkSpam=false",
			ctype: "multipart/related; boundary=B", body: good, wantStatus: 200},
		{name: "no token", method: "POST", path: "/upload/gmail/v1/users/me/messages/import?uploadType=multipart",
			ctype: "multipart/related; boundary=B", body: good, token: "-", wantStatus: 401},
		{name: "media upload", method: "POST", path: "/upload/gmail/v1/users/me/messages/import?uploadType=media",
			ctype: "message/rfc822", body: msg, wantStatus: 400, violation: true},
		{name: "metadata URI", method: "POST", path: "/gmail/v1/users/me/messages/import",
			ctype: "application/json", body: "{}", wantStatus: 404, violation: true},
		{name: "bad internalDateSource", method: "POST", path: "/upload/gmail/v1/users/me/messages/import?uploadType=multipart&internalDateSource=date",
			ctype: "multipart/related; boundary=B", body: good, wantStatus: 400, violation: true},
		{name: "bad boolean", method: "POST", path: "/upload/gmail/v1/users/me/messages/import?uploadType=multipart&neverMarkSpam=1",
			ctype: "multipart/related; boundary=B", body: good, wantStatus: 400, violation: true},
		{name: "no Content-Length", method: "POST", path: "/upload/gmail/v1/users/me/messages/import?uploadType=multipart",
			ctype: "multipart/related; boundary=B", body: good, chunked: true, wantStatus: 400, violation: true},
		{name: "form-data", method: "POST", path: "/upload/gmail/v1/users/me/messages/import?uploadType=multipart",
			ctype: "multipart/form-data; boundary=B", body: good, wantStatus: 400, violation: true},
		{name: "media first", method: "POST", path: "/upload/gmail/v1/users/me/messages/import?uploadType=multipart",
			ctype: "multipart/related; boundary=B", body: multipartBody("message/rfc822", `{}`, "application/json"), wantStatus: 400, violation: true},
		{name: "unknown metadata field", method: "POST", path: "/upload/gmail/v1/users/me/messages/import?uploadType=multipart",
			ctype: "multipart/related; boundary=B", body: multipartBody("application/json", `{"labels":["INBOX"]}`, "message/rfc822"), wantStatus: 400, violation: true},
		{name: "unknown label", method: "POST", path: "/upload/gmail/v1/users/me/messages/import?uploadType=multipart",
			ctype: "multipart/related; boundary=B", body: multipartBody("application/json", `{"labelIds":["Label_99"]}`, "message/rfc822"), wantStatus: 400},
		{name: "label with an id", method: "POST", path: "/gmail/v1/users/me/labels",
			ctype: "application/json", body: `{"id":"x","name":"y"}`, wantStatus: 400, violation: true},
		{name: "label create on the upload URI", method: "POST", path: "/upload/gmail/v1/users/me/labels",
			ctype: "application/json", body: `{"name":"ISP","labelListVisibility":"labelShow","messageListVisibility":"show"}`, wantStatus: 404, violation: true},
		{name: "label create, right path", method: "POST", path: "/gmail/v1/users/me/labels",
			ctype: "application/json", body: `{"name":"ISP","labelListVisibility":"labelShow","messageListVisibility":"show"}`, wantStatus: 200},
		{name: "label exists", method: "POST", path: "/gmail/v1/users/me/labels",
			ctype: "application/json", body: `{"name":"inbox"}`, wantStatus: 409},
		{name: "bad visibility", method: "POST", path: "/gmail/v1/users/me/labels",
			ctype: "application/json", body: `{"name":"Z","labelListVisibility":"visible"}`, wantStatus: 400, violation: true},
		{name: "search", method: "GET", path: "/gmail/v1/users/me/messages?q=rfc822msgid%3A%3Ca%40b%3E&includeSpamTrash=true&maxResults=10", wantStatus: 200},
		{name: "other search", method: "GET", path: "/gmail/v1/users/me/messages?q=from%3Ax", wantStatus: 400, violation: true},
		{name: "maxResults over 500", method: "GET", path: "/gmail/v1/users/me/messages?q=rfc822msgid%3Aa%40b&maxResults=501", wantStatus: 400, violation: true},
		{name: "labels with DELETE", method: "DELETE", path: "/gmail/v1/users/me/labels", wantStatus: 405, violation: true},
	}
	s := New()
	defer s.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(s.Violations())
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body) // unknown length: sent chunked
			}
			req, _ := http.NewRequest(tt.method, s.URL+tt.path, body)
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			if tt.token != "-" {
				req.Header.Set("Authorization", "Bearer "+Token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantStatus, b)
			}
			if resp.StatusCode != 200 {
				// Every error has Google's body: error.code, .message,
				// .status, .errors[].reason.
				var eb struct {
					Error struct {
						Code    int    `json:"code"`
						Message string `json:"message"`
						Status  string `json:"status"`
						Errors  []struct {
							Reason string `json:"reason"`
						} `json:"errors"`
					} `json:"error"`
				}
				if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || eb.Error.Code != tt.wantStatus ||
					eb.Error.Status == "" || eb.Error.Message == "" || len(eb.Error.Errors) == 0 {
					t.Errorf("error body %+v, %v", eb, err)
				}
			}
			if got := len(s.Violations()) > before; got != tt.violation {
				t.Errorf("violation recorded: %v, want %v (%v)", got, tt.violation, s.Violations()[before:])
			}
		})
	}
}

// TestFakeCutUpload: a client that dies mid-upload (the kill loop's
// SIGKILL) leaves no message and is no violation of the contract, at
// whatever octet its request breaks off; a client that dies after its
// whole request went out, before reading the reply, leaves the message
// stored, as Google does: the import happened, only its answer was lost.
func TestFakeCutUpload(t *testing.T) {
	const msg = "Message-ID: <cut@b>\r\nSubject: x\r\n\r\nbody\r\n"
	body := "--B\r\nContent-Type: application/json\r\n\r\n" + `{"labelIds":["INBOX"]}` +
		"\r\n--B\r\nContent-Type: message/rfc822\r\n\r\n" + msg + "\r\n--B--\r\n"
	s := New()
	send := func(n int) {
		conn, err := net.Dial("tcp", s.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /upload/gmail/v1/users/me/messages/import?uploadType=multipart HTTP/1.1\r\nHost: x\r\n"+
			"Authorization: Bearer %s\r\nContent-Type: multipart/related; boundary=B\r\nContent-Length: %d\r\n\r\n%s",
			Token, len(body), body[:n])
	}
	for n := 0; n < len(body); n++ {
		send(n)
	}
	send(len(body))
	// Close drops connections whose request it has not begun to read:
	// wait until every request is being handled, then for their ends.
	for deadline := time.Now().Add(10 * time.Second); len(s.Ops()) < len(body)+1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests reached the fake", len(s.Ops()), len(body)+1)
		}
	}
	s.Close()
	if v := s.Violations(); len(v) != 0 {
		t.Errorf("cut uploads taken for violations: %q", v)
	}
	got := s.Messages()
	if len(got) != 1 || got[0].MessageID != "<cut@b>" || string(got[0].Raw) != msg {
		t.Fatalf("stored %d messages, want the one whose request came whole: %+v", len(got), got)
	}
}
