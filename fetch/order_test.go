//go:build linux

package fetch

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// orderLMTP is an LMTP server that notes the subjects of the messages it
// takes, in the order it takes them.
type orderLMTP struct {
	mu       sync.Mutex
	subjects []int
}

func (o *orderLMTP) NewSession(*smtp.Conn) (smtp.Session, error) { return &orderSession{o: o}, nil }

type orderSession struct{ o *orderLMTP }

func (*orderSession) Reset()                               {}
func (*orderSession) Logout() error                        { return nil }
func (*orderSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*orderSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (*orderSession) Data(io.Reader) error                 { return fmt.Errorf("LMTPData is used") }
func (x *orderSession) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.o.mu.Lock()
	x.o.subjects = append(x.o.subjects, subjectNumbers(data)...)
	x.o.mu.Unlock()
	status.SetStatus("alice@example.com", nil)
	return nil
}

// subjectNumbers returns the numbers of the "Subject: message N" lines
// in data, in order.
func subjectNumbers(data []byte) []int {
	var out []int
	for _, m := range subjectNum.FindAllSubmatch(data, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		out = append(out, n)
	}
	return out
}

// jitter wraps a Deliverer and makes each message's Publish and Sync take
// a random time, as a disk under load does: with messages published by
// several goroutines, that shuffled their order.
type jitter struct {
	deliver.Deliverer
	mu        sync.Mutex
	published []int
}

type jitterStaged struct {
	deliver.Staged
	j   *jitter
	num int
}

func (j *jitter) Stage(ctx context.Context, r io.Reader, env deliver.Envelope) (deliver.Staged, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	st, err := j.Deliverer.Stage(ctx, bytes.NewReader(data), env)
	if err != nil {
		return nil, err
	}
	num := 0
	if ns := subjectNumbers(data); len(ns) == 1 {
		num = ns[0]
	}
	return &jitterStaged{Staged: st, j: j, num: num}, nil
}

func pause() { time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond) }

func (s *jitterStaged) Sync(ctx context.Context) error {
	pause()
	if sy, ok := s.Staged.(deliver.Syncer); ok {
		return sy.Sync(ctx)
	}
	return nil
}

func (s *jitterStaged) Publish(ctx context.Context) error {
	pause()
	err := s.Staged.Publish(ctx)
	if err == nil {
		s.j.mu.Lock()
		s.j.published = append(s.j.published, s.num)
		s.j.mu.Unlock()
	}
	return err
}

// Name passes on the Maildir's name, so that pending records are kept.
func (s *jitterStaged) Name() string {
	if n, ok := s.Staged.(deliver.Named); ok {
		return n.Name()
	}
	return ""
}

func inOrder(got []int, n int) error {
	if len(got) != n {
		return fmt.Errorf("%d messages, want %d: %v", len(got), n, got)
	}
	for i, v := range got {
		if v != i+1 {
			return fmt.Errorf("message %d arrived in place %d: %v", v, i+1, got)
		}
	}
	return nil
}

// TestPollDeliversInServerOrder: whatever the target, messages arrive in
// the order the server numbers them (as fetchmail and mpop deliver), with
// the fsyncs still overlapping: each target's own record of what it
// received is read back.
func TestPollDeliversInServerOrder(t *testing.T) {
	const n = 60
	type target struct {
		d     deliver.Deliverer
		order func() []int // what the target itself received, in order
	}
	tests := []struct {
		name string
		make func(t *testing.T, f *fixture) target
	}{
		{"maildir", func(t *testing.T, f *fixture) target {
			// The order a Maildir shows: the files' change times (set when
			// each is linked into new/), ties broken by the order of
			// staging (the name's Q counter). Change times come from the
			// kernel's coarse clock: under load several links share one.
			return target{f.md, func() []int { return maildirOrder(t, f.dir) }}
		}},
		{"mbox", func(t *testing.T, f *fixture) target {
			path := filepath.Join(t.TempDir(), "mbox")
			return target{&deliver.Mbox{Path: path}, func() []int {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				return subjectNumbers(data)
			}}
		}},
		{"mda", func(t *testing.T, f *fixture) target {
			out := filepath.Join(t.TempDir(), "subjects")
			script := mdaScript(t, `grep '^Subject: ' >> `+out)
			return target{&deliver.MDA{Argv: []string{script}}, func() []int {
				data, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				return subjectNumbers(data)
			}}
		}},
		{"lmtp", func(t *testing.T, f *fixture) target {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			o := &orderLMTP{}
			srv := smtp.NewServer(o)
			srv.LMTP = true
			srv.Domain = "lmtp.test"
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			return target{&deliver.LMTP{Addr: ln.Addr().String(), Recipients: []string{"alice@example.com"}}, func() []int {
				o.mu.Lock()
				defer o.mu.Unlock()
				return append([]int(nil), o.subjects...)
			}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, pop3test.Config{Pipelining: true}, testMessages(n))
			tg := tt.make(t, f)
			j := &jitter{Deliverer: tg.d}
			tune := tuning{window: 32, syncers: 4, queue: 8, batch: 8, batchWait: time.Millisecond}
			st, err := Poll(context.Background(), f.acct, f.store, j, &Options{tune: &tune})
			if err != nil || st.Delivered != n {
				t.Fatalf("%+v, %v", st, err)
			}
			if err := inOrder(j.published, n); err != nil {
				t.Errorf("published: %v", err)
			}
			if err := inOrder(tg.order(), n); err != nil {
				t.Errorf("%s received: %v", tt.name, err)
			}
		})
	}
}

// maildirOrder returns the subjects of the messages in dir/new, in the
// order their files were linked there.
func maildirOrder(t *testing.T, dir string) []int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil {
		t.Fatal(err)
	}
	type file struct {
		ctime int64
		seq   int // the Maildir's counter when the message was staged
		num   int
	}
	var files []file
	for _, e := range entries {
		path := filepath.Join(dir, "new", e.Name())
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		ns := subjectNumbers(data)
		if len(ns) != 1 {
			t.Fatalf("%s: subjects %v", e.Name(), ns)
		}
		files = append(files, file{st.Ctim.Sec*1e9 + st.Ctim.Nsec, stagedSeq(t, e.Name()), ns[0]})
	}
	slices.SortFunc(files, func(a, b file) int {
		return cmp.Or(cmp.Compare(a.ctime, b.ctime), cmp.Compare(a.seq, b.seq))
	})
	out := make([]int, len(files))
	for i, f := range files {
		out[i] = f.num
	}
	return out
}

// stagedSeq is the per-process counter in a Maildir file name
// ("...P<pid>Q<counter>R..."), which counts messages as they are staged.
// Compared as text ("Q10" < "Q9"), names would misorder the ties of
// maildirOrder.
func stagedSeq(t *testing.T, name string) int {
	t.Helper()
	_, rest, ok := strings.Cut(name, "Q")
	digits, _, ok2 := strings.Cut(rest, "R")
	n, err := strconv.Atoi(digits)
	if !ok || !ok2 || err != nil {
		t.Fatalf("%s: no staging counter in the name", name)
	}
	return n
}
