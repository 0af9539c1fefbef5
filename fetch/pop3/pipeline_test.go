package pop3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"
)

// drive sends cmds through a pipeline from one goroutine and collects the
// replies (bodies read to the end) in another, as the session does.
func drive(t *testing.T, c *Client, window int, cmds []Command) ([]string, error) {
	t.Helper()
	p, err := c.Pipeline(ctx(t), window)
	if err != nil {
		t.Fatal(err)
	}
	sendErr := make(chan error, 1)
	go func() {
		for _, cmd := range cmds {
			if err := p.Send(cmd); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- p.CloseSend()
	}()
	var got []string
	var rerr error
	for {
		r, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			rerr = err
			break
		}
		s := fmt.Sprintf("%s %d", r.Command.Verb, r.Command.Msg)
		if r.Err != nil {
			s += " -ERR " + r.Err.Text
		}
		if r.Body != nil {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				rerr = err
				break
			}
			s += " " + string(b)
		}
		got = append(got, s)
	}
	if werr := <-sendErr; rerr == nil {
		rerr = werr
	}
	if err := p.End(); rerr == nil {
		rerr = err
	}
	return got, rerr
}

func TestPipelineInOrder(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		// Three commands go out before any reply: the window is 3.
		"C: RETR 1", "C: RETR 2", "C: RETR 3",
		"S: +OK", "S: one", "S: .",
		"S: -ERR [SYS/TEMP] gone",
		"S: +OK", "S: ..three", "S: .",
		"C: RETR 4", "C: DELE 1",
		"S: +OK", "S: four", "S: .",
		"S: +OK deleted",
		"C: NOOP", "S: +OK",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	got, err := drive(t, c, 3, []Command{{"RETR", 1}, {"RETR", 2}, {"RETR", 3}, {"RETR", 4}, {"DELE", 1}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"RETR 1 one\n", "RETR 2 -ERR gone", "RETR 3 .three\n", "RETR 4 four\n", "DELE 1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	// After End the client works as before.
	if err := c.Noop(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestPipelineWindowOfOne(t *testing.T) {
	// Without PIPELINING each command waits for the reply to the last.
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: RETR 1", "S: +OK", "S: a", "S: .",
		"C: DELE 1", "S: +OK",
		"C: RETR 2", "S: +OK", "S: b", "S: .",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	got, err := drive(t, c, 1, []Command{{"RETR", 1}, {"DELE", 1}, {"RETR", 2}})
	if err != nil || len(got) != 3 {
		t.Fatalf("%q, %v", got, err)
	}
}

func TestPipelineConnectionDropped(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: RETR 1", "C: RETR 2",
		"S: +OK", "S: complete", "S: .",
		"S: +OK", "S: partial",
		"CLOSE",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	// Ten commands with a window of 2: the writer is blocked on the window
	// when the connection drops, and must be released.
	var cmds []Command
	for i := 1; i <= 10; i++ {
		cmds = append(cmds, Command{"RETR", i})
	}
	done := make(chan struct{})
	var got []string
	go func() {
		got, err = drive(t, c, 2, cmds)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("pipeline hung after the connection dropped")
	}
	// The server hangs up with pipelined commands unread, so its kernel
	// may send a reset, and a reset makes the client's kernel drop what it
	// had not read yet: the client sees the message cut short, or the
	// reset itself, and maybe not even the first reply.
	if !errors.Is(err, ErrTruncated) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("got %v, want ErrTruncated or a connection reset", err)
	}
	if len(got) > 1 || (len(got) == 1 && got[0] != "RETR 1 complete\n") {
		t.Errorf("replies before the drop: %q", got)
	}
	if err := c.Noop(ctx(t)); err == nil {
		t.Error("client usable after a failed pipeline")
	}
}

func TestPipelineRefusesOtherCommands(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{"S: +OK hi"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	p, err := c.Pipeline(ctx(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(ctx(t)); err == nil {
		t.Error("NOOP accepted during a pipeline")
	}
	if err := p.Send(Command{"PASS", 0}); err == nil {
		t.Error("PASS accepted into a pipeline")
	}
	if err := p.End(); err != nil {
		t.Fatal(err)
	}
}

func TestLogin(t *testing.T) {
	var trace bytes.Buffer
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: USER u", "S: +OK",
		"C: PASS secret", "S: +OK logged in",
	}, &Options{Debug: &trace})
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	if err := c.Login(ctx(t), "u", "secret", false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(trace.String(), "secret") {
		t.Errorf("trace holds the password:\n%s", trace.String())
	}
}

func TestLoginRefused(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: USER u", "S: +OK",
		"C: PASS p", "S: -ERR [AUTH] Authentication failed.",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	err = c.Login(ctx(t), "u", "p", false)
	var perr *Error
	if !errors.As(err, &perr) || perr.Command != "PASS" || !perr.HasCode(CodeAuth) {
		t.Fatalf("got %v", err)
	}
}

func TestListAllPipelined(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: UIDL", "C: LIST",
		"S: +OK", "S: 1 aaa", "S: 2 bbb", "S: .",
		"S: +OK", "S: 1 10", "S: 2 20", "S: .",
		"C: UIDL", "C: LIST",
		"S: -ERR no UIDL here",
		"S: +OK", "S: 1 10", "S: .",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	l, err := c.ListAll(ctx(t), ListRequest{UIDL: true, List: true}, true)
	if err != nil || l.UIDLErr != nil || l.ListErr != nil || len(l.UIDs) != 2 || len(l.Sizes) != 2 || l.UIDs[1].UID != "bbb" || l.Sizes[1].Size != 20 {
		t.Fatalf("%+v %v", l, err)
	}
	l, err = c.ListAll(ctx(t), ListRequest{UIDL: true, List: true}, true)
	var perr *Error
	if err != nil || !errors.As(l.UIDLErr, &perr) || l.UIDs != nil || l.ListErr != nil || len(l.Sizes) != 1 {
		t.Fatalf("%+v %v", l, err)
	}
}

// TestLoginPipelined: USER and PASS go in one write, and nothing follows
// PASS before its reply: a server that hands the connection to another
// process at login drops what was sent behind PASS.
func TestLoginPipelined(t *testing.T) {
	var trace bytes.Buffer
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: USER u", "C: PASS secret",
		"S: +OK", "S: +OK logged in",
		"C: CAPA", "C: UIDL",
		"S: +OK", "S: EXPIRE 0", "S: PIPELINING", "S: .",
		"S: +OK", "S: 1 a", "S: .",
	}, &Options{Debug: &trace})
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	if err := c.Login(ctx(t), "u", "secret", true); err != nil {
		t.Fatal(err)
	}
	l, err := c.ListAll(ctx(t), ListRequest{Capa: true, UIDL: true}, true)
	if err != nil || len(l.UIDs) != 1 || l.Sizes != nil || l.CapaErr != nil || l.Caps["EXPIRE"][0] != "0" || !l.Caps.Has("PIPELINING") {
		t.Fatalf("%+v %v", l, err)
	}
	if strings.Contains(trace.String(), "secret") {
		t.Errorf("trace holds the password:\n%s", trace.String())
	}
}

func TestLoginPipelinedRefused(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: USER u", "C: PASS wrong",
		"S: +OK", "S: -ERR [AUTH] Authentication failed.",
		"C: QUIT", "S: +OK",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	err = c.Login(ctx(t), "u", "wrong", true)
	var perr *Error
	if !errors.As(err, &perr) || perr.Command != "PASS" || !perr.HasCode(CodeAuth) {
		t.Fatalf("got %v", err)
	}
	if err := c.Quit(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

// TestListAllCapaRefused: a server that refuses CAPA after login still
// gives its listing, one command at a time.
func TestListAllCapaRefused(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: CAPA", "S: -ERR unknown command",
		"C: UIDL", "S: +OK", "S: 1 a", "S: .",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	l, err := c.ListAll(ctx(t), ListRequest{Capa: true, UIDL: true}, false)
	var perr *Error
	if err != nil || !errors.As(l.CapaErr, &perr) || l.Caps != nil || len(l.UIDs) != 1 {
		t.Fatalf("%+v %v", l, err)
	}
}

func TestPipelineQuit(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: DELE 1", "C: QUIT",
		"S: +OK deleted", "S: +OK bye",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	got, err := drive(t, c, 8, []Command{{"DELE", 1}, {"QUIT", 0}})
	if err != nil || len(got) != 2 || got[1] != "QUIT 0" {
		t.Fatalf("%q, %v", got, err)
	}
	if err := c.Noop(ctx(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("NOOP after a pipelined QUIT: %v", err)
	}
}

func TestPipelineContextCancel(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{"S: +OK hi", "C: RETR 1", "STALL"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	cctx, cancel := context.WithCancel(context.Background())
	p, err := c.Pipeline(cctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	p.Send(Command{"RETR", 1})
	p.Flush()
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := p.Next(); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestAPOPRedacted(t *testing.T) {
	var trace bytes.Buffer
	c, err, wait := runTranscript(t, transcript{
		"S: +OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
		"C: APOP mrose c4c9334bac560ecc979e58001b3e22fb", "S: +OK",
	}, &Options{Debug: &trace})
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	if err := c.APOP(ctx(t), "mrose", "tanstaaf"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(trace.String(), "c4c9334b") || !strings.Contains(trace.String(), "C: APOP mrose <redacted>") {
		t.Errorf("trace:\n%s", trace.String())
	}
}

// TestProbePipelined: STAT, UIDL n and LIST n in one write, each answer
// with its own error: a message that does not exist, a malformed line, a
// reply about another message.
func TestProbePipelined(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: STAT", "C: UIDL 1", "C: UIDL 7", "C: UIDL 9", "C: LIST 8", "C: LIST 9",
		"S: +OK 9 4321",
		"S: +OK 1 first",
		"S: +OK 7 seventh",
		"S: -ERR no such message",
		"S: +OK 8 100",
		"S: +OK 8 200",
		"C: STAT", "C: UIDL 2",
		"S: +OK many",
		"S: +OK 2",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	p, err := c.Probe(ctx(t), ProbeRequest{UIDs: []int{1, 7, 9}, Sizes: []int{8, 9}}, true)
	if err != nil || p.StatErr != nil || p.Count != 9 || p.Size != 4321 {
		t.Fatalf("%+v %v", p, err)
	}
	if p.UIDs[0] != (MessageUID{1, "first"}) || p.UIDs[1] != (MessageUID{7, "seventh"}) || p.UIDErrs[0] != nil || p.UIDErrs[1] != nil {
		t.Errorf("UIDs %+v %v", p.UIDs, p.UIDErrs)
	}
	var perr *Error
	if !errors.As(p.UIDErrs[2], &perr) || p.UIDs[2] != (MessageUID{}) {
		t.Errorf("UIDL 9: %+v %v", p.UIDs[2], p.UIDErrs[2])
	}
	var proto *ProtocolError
	if p.Sizes[0] != (MessageSize{8, 100}) || p.SizeErrs[0] != nil || !errors.As(p.SizeErrs[1], &proto) {
		t.Errorf("sizes %+v %v", p.Sizes, p.SizeErrs)
	}
	// Malformed replies are errors of their commands; the connection
	// stays in step.
	p, err = c.Probe(ctx(t), ProbeRequest{UIDs: []int{2}}, true)
	if err != nil || !errors.As(p.StatErr, &proto) || !errors.As(p.UIDErrs[0], &proto) || p.Count != 0 {
		t.Fatalf("%+v %v", p, err)
	}
}

// TestProbeOneAtATime: without pipelining each command waits for the
// reply to the one before.
func TestProbeOneAtATime(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: STAT", "S: +OK 2 300",
		"C: UIDL 2", "S: +OK 2 b",
		"C: LIST 2", "S: +OK 2 150",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	p, err := c.Probe(ctx(t), ProbeRequest{UIDs: []int{2}, Sizes: []int{2}}, false)
	if err != nil || p.Count != 2 || p.Size != 300 || p.UIDs[0].UID != "b" || p.Sizes[0].Size != 150 {
		t.Fatalf("%+v %v", p, err)
	}
}

// TestListAllStat: STAT goes out with UIDL and LIST, its answer given
// before the listings are read; LIST can stream too.
func TestListAllStat(t *testing.T) {
	c, err, wait := runTranscript(t, transcript{
		"S: +OK hi",
		"C: STAT", "C: UIDL", "C: LIST",
		"S: +OK 2 30",
		"S: +OK", "S: 1 aaa", "S: 2 bbb", "S: .",
		"S: +OK", "S: 1 10", "S: 2 20", "S: .",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	var order []string
	var sizes []MessageSize
	l, err := c.ListAll(ctx(t), ListRequest{Stat: true, UIDL: true, List: true,
		OnStat: func(n int, size int64) { order = append(order, fmt.Sprintf("stat %d %d", n, size)) },
		OnUID:  func(m MessageUID) error { order = append(order, m.UID); return nil },
		OnSize: func(m MessageSize) error { sizes = append(sizes, m); return nil },
	}, true)
	if err != nil || l.StatErr != nil || l.Count != 2 || l.Size != 30 || l.Sizes != nil || len(sizes) != 2 || sizes[1] != (MessageSize{2, 20}) {
		t.Fatalf("%+v %v", l, err)
	}
	if strings.Join(order, ",") != "stat 2 30,aaa,bbb" {
		t.Errorf("order %q", order)
	}
}
