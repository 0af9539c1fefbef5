package deliver

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// lmtpServer is an in-process LMTP server whose replies per recipient are
// set by the test.
type lmtpServer struct {
	addr string
	mu   sync.Mutex
	// rcptErr and dataErr refuse a recipient at RCPT or after DATA.
	rcptErr, dataErr map[string]*smtp.SMTPError
	stall            bool // after DATA, never answer
	sessions         int
	got              []lmtpMessage
}

type lmtpMessage struct {
	from  string
	body  smtp.BodyType
	rcpts []string // those that accepted it
	data  string
}

func startLMTP(t *testing.T, network string) *lmtpServer {
	t.Helper()
	s := &lmtpServer{rcptErr: map[string]*smtp.SMTPError{}, dataErr: map[string]*smtp.SMTPError{}}
	var ln net.Listener
	var err error
	if network == "unix" {
		s.addr = filepath.Join(t.TempDir(), "lmtp")
		ln, err = net.Listen("unix", s.addr)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			s.addr = ln.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		s.mu.Lock()
		s.sessions++
		s.mu.Unlock()
		return &lmtpSession{s: s}, nil
	}))
	srv.LMTP = true
	srv.Domain = "lmtp.test"
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

type lmtpSession struct {
	s     *lmtpServer
	msg   lmtpMessage
	rcpts []string
}

func (x *lmtpSession) Reset()        { x.msg, x.rcpts = lmtpMessage{}, nil }
func (x *lmtpSession) Logout() error { return nil }
func (x *lmtpSession) Mail(from string, opts *smtp.MailOptions) error {
	x.msg.from, x.msg.body = from, opts.Body
	return nil
}

func (x *lmtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	if err := x.s.rcptErr[to]; err != nil {
		return err
	}
	x.rcpts = append(x.rcpts, to)
	return nil
}

func (x *lmtpSession) Data(r io.Reader) error { panic("LMTPData is used") }

func (x *lmtpSession) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	if x.s.stall {
		time.Sleep(time.Second)
		return errors.New("stalled")
	}
	m := x.msg
	m.data = strings.ReplaceAll(string(data), "\r\n", "\n")
	for _, rc := range x.rcpts {
		if err := x.s.dataErr[rc]; err != nil {
			status.SetStatus(rc, err)
			continue
		}
		m.rcpts = append(m.rcpts, rc)
		status.SetStatus(rc, nil)
	}
	x.s.got = append(x.s.got, m)
	return nil
}

func lmtpPublish(ctx context.Context, t *testing.T, l *LMTP, msg string) error {
	t.Helper()
	st, err := l.Stage(ctx, strings.NewReader(msg), Envelope{Recipient: "me@x.test"})
	if err != nil {
		t.Fatal(err)
	}
	return st.Publish(ctx)
}

var (
	tempFull = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Quota exceeded"}
	permGone = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User doesn't exist"}
)

func TestLMTP(t *testing.T) {
	const msg = "Return-Path: <sender@example.com>\nSubject: x\n\n.dot\n8-bit: café\n"
	for _, tc := range []struct {
		name       string
		rcpts      []string
		rcptErr    map[string]*smtp.SMTPError
		dataErr    map[string]*smtp.SMTPError
		wantErr    string // "" (delivered), "temporary" or "permanent"
		wantInErr  string
		wantRcpts  []string // those the server delivered to
		wantNoData bool
	}{
		{name: "delivered", wantRcpts: []string{"me@x.test"}},
		{name: "two recipients", rcpts: []string{"a@x.test", "b@x.test"}, wantRcpts: []string{"a@x.test", "b@x.test"}},
		{name: "RCPT refused temporarily", rcptErr: map[string]*smtp.SMTPError{"me@x.test": tempFull},
			wantErr: "temporary", wantInErr: "<me@x.test> refused: 452 4.2.2 Quota exceeded", wantNoData: true},
		{name: "RCPT refused", rcptErr: map[string]*smtp.SMTPError{"me@x.test": permGone},
			wantErr: "permanent", wantInErr: "<me@x.test> refused: 550 5.1.1", wantNoData: true},
		{name: "DATA refused temporarily for one", rcpts: []string{"a@x.test", "b@x.test"}, dataErr: map[string]*smtp.SMTPError{"b@x.test": tempFull},
			wantErr: "temporary", wantInErr: "accepted by <a@x.test>", wantRcpts: []string{"a@x.test"}},
		{name: "DATA refused for one", rcpts: []string{"a@x.test", "b@x.test"}, dataErr: map[string]*smtp.SMTPError{"a@x.test": permGone},
			wantErr: "permanent", wantInErr: "<a@x.test> refused: 550", wantRcpts: []string{"b@x.test"}},
		{name: "refused temporarily and for good", rcpts: []string{"a@x.test", "b@x.test"},
			rcptErr: map[string]*smtp.SMTPError{"a@x.test": tempFull}, dataErr: map[string]*smtp.SMTPError{"b@x.test": permGone},
			wantErr: "permanent", wantRcpts: nil},
	} {
		for _, network := range []string{"unix", "tcp"} {
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				s := startLMTP(t, network)
				for k, v := range tc.rcptErr {
					s.rcptErr[k] = v
				}
				for k, v := range tc.dataErr {
					s.dataErr[k] = v
				}
				addr := s.addr
				if network == "unix" {
					addr = "unix:" + addr
				}
				l := &LMTP{Addr: addr, Recipients: tc.rcpts, Timeout: 5 * time.Second}
				defer l.Close()
				err := lmtpPublish(context.Background(), t, l, msg)
				var derr *Error
				switch {
				case tc.wantErr == "" && err != nil:
					t.Fatalf("Publish: %v", err)
				case tc.wantErr != "" && !errors.As(err, &derr):
					t.Fatalf("Publish = %v, want a *deliver.Error", err)
				case tc.wantErr != "" && derr.Temporary != (tc.wantErr == "temporary"):
					t.Errorf("Temporary = %v, want %s: %v", derr.Temporary, tc.wantErr, err)
				}
				if tc.wantInErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantInErr)) {
					t.Errorf("error %v, want it to say %q", err, tc.wantInErr)
				}
				s.mu.Lock()
				defer s.mu.Unlock()
				if tc.wantNoData {
					if len(s.got) != 0 {
						t.Errorf("DATA was sent with no recipient accepted")
					}
					return
				}
				if len(s.got) != 1 {
					t.Fatalf("server got %d messages, want 1", len(s.got))
				}
				m := s.got[0]
				if strings.Join(m.rcpts, ",") != strings.Join(tc.wantRcpts, ",") {
					t.Errorf("delivered to %v, want %v", m.rcpts, tc.wantRcpts)
				}
				if m.data != msg || m.from != "sender@example.com" || m.body != smtp.Body8BitMIME {
					t.Errorf("server got from %q body %q data %q", m.from, m.body, m.data)
				}
			})
		}
	}
}

// TestLMTPSession: messages share one session; a stalled server is given
// up after the timeout, and the next message starts a new session.
func TestLMTPSession(t *testing.T) {
	s := startLMTP(t, "unix")
	l := &LMTP{Addr: s.addr, Timeout: 300 * time.Millisecond}
	defer l.Close()
	for i := 0; i < 3; i++ {
		if err := lmtpPublish(context.Background(), t, l, "Subject: x\n\n"); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	if s.sessions != 1 || len(s.got) != 3 || s.got[0].from != "" {
		t.Errorf("%d sessions, %d messages (from %q); want 1 session, 3 messages, the null sender", s.sessions, len(s.got), s.got[0].from)
	}
	s.stall = true
	s.mu.Unlock()
	start := time.Now()
	err := lmtpPublish(context.Background(), t, l, "Subject: y\n\n")
	var derr *Error
	if !errors.As(err, &derr) || !derr.Temporary {
		t.Fatalf("stalled server: %v, want a temporary error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("gave up after %v", d)
	}
	time.Sleep(time.Second) // the stalled session finishes
	s.mu.Lock()
	s.stall = false
	s.mu.Unlock()
	if err := lmtpPublish(context.Background(), t, l, "Subject: z\n\n"); err != nil {
		t.Fatalf("after a stall: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions != 2 {
		t.Errorf("%d sessions, want 2 (a new one after the stall)", s.sessions)
	}
}

func TestLMTPUnreachable(t *testing.T) {
	l := &LMTP{Addr: filepath.Join(t.TempDir(), "no-socket"), Timeout: time.Second}
	err := lmtpPublish(context.Background(), t, l, "Subject: x\n\n")
	var derr *Error
	if !errors.As(err, &derr) || !derr.Temporary {
		t.Fatalf("no server: %v, want a temporary error", err)
	}
}
