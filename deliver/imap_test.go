package deliver

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeIMAP is a scripted IMAP server: each command gets the answer of
// the first rule whose command name matches; APPEND's literal (LITERAL+)
// is read and dropped.
type fakeIMAP struct {
	ln net.Listener
	// answers: command name -> tagged answer without the tag ("OK
	// done"); "APPEND#n" answers the nth APPEND only.
	answers map[string]string
	appends atomic.Int32
}

func newFakeIMAP(t *testing.T, answers map[string]string) *fakeIMAP {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIMAP{ln: ln, answers: answers}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f
}

var literalRE = regexp.MustCompile(`\{(\d+)\+?\}\r\n$`)

func (f *fakeIMAP) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	c.Write([]byte("* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] fake\r\n"))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if m := literalRE.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
				return
			}
			r.ReadString('\n') // the end of the command
		}
		f2 := strings.Fields(line)
		if len(f2) < 2 {
			continue
		}
		tag, cmd := f2[0], strings.ToUpper(f2[1])
		switch cmd {
		case "CAPABILITY":
			c.Write([]byte("* CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS\r\n"))
		case "STATUS":
			if a, ok := f.answers["STATUS"]; !ok || strings.HasPrefix(a, "OK") {
				c.Write([]byte("* STATUS INBOX (UIDNEXT 7 UIDVALIDITY 42)\r\n"))
			}
		case "APPEND":
			f.appends.Add(1)
		}
		a, ok := f.answers[cmd+"#"+strconv.Itoa(int(f.appends.Load()))]
		if !ok || cmd != "APPEND" {
			a, ok = f.answers[cmd]
		}
		if !ok {
			a = "OK done"
		}
		c.Write([]byte(tag + " " + a + "\r\n"))
	}
}

func (f *fakeIMAP) deliverer() *IMAP {
	return &IMAP{Addr: f.ln.Addr().String(), TLS: IMAPNone, AllowInsecureAuth: true, User: "u",
		Password: func(context.Context) (string, error) { return "p", nil }, Timeout: 5 * time.Second}
}

// TestIMAPRefusals: what the IMAP server says decides whether a failure
// is temporary, and the error says the IMAP side failed, with the
// server's words made safe to show.
func TestIMAPRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers map[string]string
		temp    bool
		want    string
		down    bool // no session: no other message would fare better
	}{
		{"over quota", map[string]string{"APPEND": "NO [OVERQUOTA] Quota exceeded"}, true, "OVERQUOTA", false},
		{"too large", map[string]string{"APPEND": "NO [LIMIT] too big"}, false, "LIMIT", false},
		{"login refused", map[string]string{"LOGIN": "NO [AUTHENTICATIONFAILED] bad password"}, false, "login refused", true},
		{"server busy", map[string]string{"LOGIN": "NO [UNAVAILABLE] try later"}, true, "UNAVAILABLE", true},
		{"no permission", map[string]string{"STATUS": "NO [NOPERM] no", "CREATE": "NO [NOPERM] no"}, false, "NOPERM", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeIMAP(t, tc.answers)
			m := f.deliverer()
			defer m.Close()
			err := appendOne(m, "From: a@b\nMessage-ID: <1@x>\n\nhello\n")
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("error %v (%T), want *deliver.Error", err, err)
			}
			if de.Temporary != tc.temp || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "IMAP server") {
				t.Errorf("error %q temporary=%v, want %q, temporary=%v, naming the IMAP server", err, de.Temporary, tc.want, tc.temp)
			}
			if de.Down != tc.down {
				t.Errorf("error %q: Down=%v, want %v", err, de.Down, tc.down)
			}
		})
	}
}

// appendOne stages, publishes and flushes one message.
func appendOne(m *IMAP, msg string) error {
	ctx := context.Background()
	st, err := m.Stage(ctx, strings.NewReader(msg), Envelope{})
	if err != nil {
		return err
	}
	if err := st.Publish(ctx); err != nil {
		return err
	}
	return m.Flush()
}

// TestIMAPStalls: a server that never answers is given up on after the
// timeout, as a temporary failure.
func TestIMAPStalls(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			time.Sleep(5 * time.Second)
		}
	}()
	m := &IMAP{Addr: ln.Addr().String(), TLS: IMAPNone, AllowInsecureAuth: true, User: "u", Timeout: 300 * time.Millisecond}
	start := time.Now()
	err = appendOne(m, "Subject: x\n\nbody\n")
	var de *Error
	if !errors.As(err, &de) || !de.Temporary {
		t.Errorf("error %v, want a temporary *deliver.Error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("gave up after %v", d)
	}
}

// TestIMAPHeaderFacts: the internal date is the first Received field's
// (after the caller's own), else Date, else now; a Message-ID with
// control characters is none.
func TestIMAPHeaderFacts(t *testing.T) {
	for _, tc := range []struct {
		head, id string
		date     time.Time
	}{
		{"Received: from a by b; Tue, 3 Mar 2020 10:00:00 +0000\nDate: Wed, 4 Mar 2020 11:00:00 +0000\nMessage-ID: <x@y>\n", "<x@y>", time.Date(2020, 3, 3, 10, 0, 0, 0, time.UTC)},
		{"Date: Wed, 4 Mar 2020 11:00:00 +0000\n", "", time.Date(2020, 3, 4, 11, 0, 0, 0, time.UTC)},
		{"Received: garbage\nDate: Wed, 4 Mar 2020 11:00:00 +0000\n", "", time.Date(2020, 3, 4, 11, 0, 0, 0, time.UTC)},
		{"Message-ID: <a\x1b[31m@b>\n", "", time.Time{}},
	} {
		id, date := headerFacts([]byte(tc.head))
		if id != tc.id {
			t.Errorf("%q: Message-ID %q, want %q", tc.head, id, tc.id)
		}
		if tc.date.IsZero() {
			if time.Since(date) > time.Minute {
				t.Errorf("%q: date %v, want now", tc.head, date)
			}
		} else if !date.Equal(tc.date) {
			t.Errorf("%q: date %v, want %v", tc.head, date, tc.date)
		}
	}
	// The caller's own Received field is skipped.
	w := &crlfWriter{w: bufio.NewWriter(discard{}), h: nopHash{}, skip: int64(len("Received: mine; Mon, 1 Jan 2024 00:00:00 +0000\n"))}
	w.Write([]byte("Received: mine; Mon, 1 Jan 2024 00:00:00 +0000\nDate: Wed, 4 Mar 2020 11:00:00 +0000\n\nbody\n"))
	if _, date := headerFacts(w.head.Bytes()); !date.Equal(time.Date(2020, 3, 4, 11, 0, 0, 0, time.UTC)) {
		t.Errorf("with the caller's Received first: date %v", date)
	}
	if w.n != int64(len("Received: mine; Mon, 1 Jan 2024 00:00:00 +0000\r\nDate: Wed, 4 Mar 2020 11:00:00 +0000\r\n\r\nbody\r\n")) {
		t.Errorf("CRLF size %d", w.n)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

type nopHash struct{}

func (nopHash) Write(p []byte) (int, error) { return len(p), nil }
func (nopHash) Sum(b []byte) []byte         { return b }
func (nopHash) Reset()                      {}
func (nopHash) Size() int                   { return 0 }
func (nopHash) BlockSize() int              { return 1 }

// TestIMAPTryCreate: an APPEND refused with [TRYCREATE] (the folder went
// away during the session) creates the folder and sends the message
// again.
func TestIMAPTryCreate(t *testing.T) {
	f := newFakeIMAP(t, map[string]string{"APPEND#1": "NO [TRYCREATE] no such mailbox"})
	m := f.deliverer()
	defer m.Close()
	if err := appendOne(m, "Subject: x\n\nbody\n"); err != nil {
		t.Fatal(err)
	}
	if n := f.appends.Load(); n != 2 {
		t.Errorf("%d APPENDs, want 2 (one refused, one after CREATE)", n)
	}
}
