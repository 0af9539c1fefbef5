package deliver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMboxrdQuoting(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"From me\n", ">From me\n"},
		{">From me\n", ">>From me\n"},
		{">>>From x\n", ">>>>From x\n"},
		{"From:\n", "From:\n"},
		{"Fro\n", "Fro\n"},
		{">Fro\n", ">Fro\n"},
		{">\n>>\n", ">\n>>\n"},
		{" From x\n", " From x\n"},
		{"a From b\nFrom c\n", "a From b\n>From c\n"},
		{"From", "From"},
		{">>", ">>"},
		{"From ", ">From "},
		{"\n\nFrom \n", "\n\n>From \n"},
		{"x>From y\n", "x>From y\n"},
	} {
		var b strings.Builder
		w := bufio.NewWriter(&b)
		q := &mboxrdWriter{w: w, bol: true}
		// One byte at a time too: the state must carry across writes.
		for _, chunked := range []bool{false, true} {
			b.Reset()
			*q = mboxrdWriter{w: w, bol: true}
			if chunked {
				for i := 0; i < len(tc.in); i++ {
					q.Write([]byte{tc.in[i]})
				}
			} else {
				q.Write([]byte(tc.in))
			}
			q.flushPending()
			w.Flush()
			if b.String() != tc.want {
				t.Errorf("quote(%q, chunked=%v) = %q, want %q", tc.in, chunked, b.String(), tc.want)
			}
		}
	}
}

// readMboxrd splits an mboxrd file into its From lines and messages, with
// one '>' taken off every quoted From line.
func readMboxrd(t *testing.T, data string) (froms, msgs []string) {
	t.Helper()
	if data == "" {
		return nil, nil
	}
	if !strings.HasPrefix(data, "From ") || !strings.HasSuffix(data, "\n\n") {
		t.Fatalf("not an mbox: %q", data)
	}
	quoted := regexp.MustCompile(`(?m)^>(>*From )`)
	for _, part := range strings.Split("\n\n"+data, "\n\nFrom ")[1:] {
		line, body, _ := strings.Cut(part, "\n")
		froms = append(froms, "From "+line)
		msgs = append(msgs, quoted.ReplaceAllString(body, "$1"))
	}
	// Every message but the last lost its final line end to the split;
	// the last has the blank line that ends it.
	msgs[len(msgs)-1] = strings.TrimSuffix(msgs[len(msgs)-1], "\n")
	for i := range msgs[:len(msgs)-1] {
		msgs[i] += "\n"
	}
	return froms, msgs
}

func publishMbox(t *testing.T, m *Mbox, msg string) error {
	t.Helper()
	st, err := m.Stage(context.Background(), strings.NewReader(msg), Envelope{Recipient: "me"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Publish(context.Background()); err != nil {
		return err
	}
	return m.Flush()
}

func TestMboxAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "inbox")
	m := &Mbox{Path: path}
	defer m.Close()
	msgs := []string{
		"Return-Path: <a@example.com>\nSubject: one\n\nFrom the start\n>From quoted\nend\n",
		"From: B <b@example.com>\nSubject: two\n\nno final newline",
		"Return-Path: <>\nSubject: a bounce\n\n\n",
		"Subject: no sender\n\nbody\nFrom \n",
	}
	for _, msg := range msgs {
		if err := publishMbox(t, m, msg); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	froms, got := readMboxrd(t, string(data))
	wantSenders := []string{"a@example.com", "b@example.com", "MAILER-DAEMON", "MAILER-DAEMON"}
	fromLine := regexp.MustCompile(`^From (\S+) [A-Z][a-z]{2} [A-Z][a-z]{2} [ 1-3][0-9] \d\d:\d\d:\d\d \d{4}$`)
	for i, f := range froms {
		m := fromLine.FindStringSubmatch(f)
		if m == nil || m[1] != wantSenders[i] {
			t.Errorf("From line %d = %q, want sender %s and a ctime date", i, f, wantSenders[i])
		}
	}
	want := append([]string(nil), msgs...)
	want[1] += "\n" // the message's end is made a line end
	if len(got) != len(want) {
		t.Fatalf("%d messages in the mbox, want %d:\n%s", len(got), len(want), data)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d read back as %q, want %q", i, got[i], want[i])
		}
	}
	if _, err := os.Stat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dot-lock left behind: %v", err)
	}
}

// TestMboxAppendsAfterForeignEnd: an mbox another program left without
// its final blank line still gets a From line at a message boundary.
func TestMboxAppendsAfterForeignEnd(t *testing.T) {
	for _, tail := range []string{"last line", "last line\n", "last line\n\n"} {
		path := filepath.Join(t.TempDir(), "inbox")
		old := "From x@y Mon Jan  2 15:04:05 2006\nSubject: old\n\n" + tail
		os.WriteFile(path, []byte(old), 0o600)
		if err := publishMbox(t, &Mbox{Path: path}, "Subject: new\n\nbody\n"); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(path)
		_, msgs := readMboxrd(t, string(data))
		if len(msgs) != 2 || msgs[1] != "Subject: new\n\nbody\n" || !strings.HasPrefix(string(data), old) {
			t.Errorf("after %q: %q", tail, data)
		}
	}
}

func TestMboxIncompleteNeverWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inbox")
	m := &Mbox{Path: path}
	if _, err := m.Stage(context.Background(), cutReader("Subject: x\n\npart"), Envelope{}); !errors.Is(err, errCut) {
		t.Fatalf("Stage = %v, want the reader's error", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the mbox exists after an incomplete message: %v", err)
	}
}

func TestMboxDotLock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "inbox")
	lock := path + ".lock"
	msg := "Subject: x\n\nbody\n"

	// Held: the delivery waits, then fails temporarily with the file untouched.
	os.WriteFile(lock, nil, 0o600)
	err := publishMbox(t, &Mbox{Path: path, LockTimeout: 200 * time.Millisecond}, msg)
	var derr *Error
	if !errors.As(err, &derr) || !derr.Temporary || !strings.Contains(err.Error(), lock) {
		t.Fatalf("with the dot-lock held: %v, want a temporary error naming the lock", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() != 0 {
		t.Errorf("the mbox was written while locked")
	}
	// Released while waiting: the delivery goes through.
	time.AfterFunc(150*time.Millisecond, func() { os.Remove(lock) })
	if err := publishMbox(t, &Mbox{Path: path}, msg); err != nil {
		t.Fatalf("after the lock was released: %v", err)
	}
	// Stale: removed.
	os.WriteFile(lock, nil, 0o600)
	old := time.Now().Add(-staleDotLock - time.Minute)
	os.Chtimes(lock, old, old)
	if err := publishMbox(t, &Mbox{Path: path, LockTimeout: 200 * time.Millisecond}, msg); err != nil {
		t.Fatalf("with a stale dot-lock: %v", err)
	}
	data, _ := os.ReadFile(path)
	if _, msgs := readMboxrd(t, string(data)); len(msgs) != 2 {
		t.Errorf("%d messages, want 2", len(msgs))
	}
}

// TestMboxFcntlLock holds an fcntl lock from another process (fcntl locks
// are per process) and checks that the delivery waits for it.
func TestMboxFcntlLock(t *testing.T) {
	if path := os.Getenv("POPFETCH_TEST_HOLD_FCNTL"); path != "" {
		holdFcntlLock(path)
		return
	}
	path := filepath.Join(t.TempDir(), "inbox")
	os.WriteFile(path, nil, 0o600)
	cmd := exec.Command(os.Args[0], "-test.run=^TestMboxFcntlLock$")
	cmd.Env = append(os.Environ(), "POPFETCH_TEST_HOLD_FCNTL="+path)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("helper: %q", line)
	}
	err := publishMbox(t, &Mbox{Path: path, LockTimeout: 300 * time.Millisecond}, "Subject: x\n\n")
	var derr *Error
	if !errors.As(err, &derr) || !derr.Temporary || !strings.Contains(err.Error(), "fcntl") {
		t.Fatalf("with the fcntl lock held: %v, want a temporary error", err)
	}
	if _, err := os.Stat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dot-lock left behind after the timeout")
	}
	stdin.Close() // the helper releases the lock and exits
	if err := publishMbox(t, &Mbox{Path: path, LockTimeout: 10 * time.Second}, "Subject: x\n\n"); err != nil {
		t.Fatalf("after the helper exited: %v", err)
	}
}

func holdFcntlLock(path string) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		os.Exit(2)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLKW, &lk); err != nil {
		os.Exit(3)
	}
	os.Stdout.WriteString("locked\n")
	buf := make([]byte, 1)
	os.Stdin.Read(buf) // until the test closes it
	os.Exit(0)
}

// TestMboxTwoWritersOneProcess: two accounts of one daemon deliver into
// one mbox at once, where the dot-lock cannot be made (a spool directory
// popfetch may not write to). The file lock alone must keep them apart:
// fcntl locks belong to the process, so they would both hold it.
func TestMboxTwoWritersOneProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inbox")
	const each = 30
	body := strings.Repeat("From a line that needs quoting, and some more text to make it long\n", 2000) // ~134 KiB
	want := map[string]bool{}
	errs := make(chan error, 2)
	for w := range 2 {
		m := &Mbox{Path: path, noDotLock: true}
		var msgs []string
		for i := range each {
			msg := fmt.Sprintf("Return-Path: <w%d@example.com>\nSubject: writer %d message %d\n\n%s", w, w, i, body)
			msgs = append(msgs, msg)
			want[msg] = true
		}
		go func() {
			defer m.Close()
			for _, msg := range msgs {
				st, err := m.Stage(context.Background(), strings.NewReader(msg), Envelope{Recipient: "me"})
				if err == nil {
					err = st.Publish(context.Background())
				}
				if err == nil {
					err = m.Flush()
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, got := readMboxrd(t, string(data))
	mixed := 0
	for _, msg := range got {
		if !want[msg] {
			mixed++
		}
		delete(want, msg)
	}
	if len(got) != 2*each || mixed > 0 || len(want) > 0 {
		t.Fatalf("the mbox holds %d messages (want %d), %d of them mixed, %d missing", len(got), 2*each, mixed, len(want))
	}
}

// TestMboxDotLockOfDeadProcess: a dot-lock that a killed popfetch on this
// host left is taken over at once; one whose process lives, or of a form
// popfetch does not write (another program's, another host's), is waited
// for.
func TestMboxDotLockOfDeadProcess(t *testing.T) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Skip("no host name")
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := dead.ProcessState.Pid()
	tests := []struct {
		name    string
		content string
		waits   bool
	}{
		{"dead popfetch on this host", fmt.Sprintf("%d %s\n", deadPID, host), false},
		{"live process on this host", fmt.Sprintf("%d %s\n", os.Getppid(), host), true},
		{"dead process on another host", fmt.Sprintf("%d %s.elsewhere\n", deadPID, host), true},
		{"another program's PID only", fmt.Sprintf("%d\n", deadPID), true},
		{"empty", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "inbox")
			if err := os.WriteFile(path+".lock", []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err := publishMbox(t, &Mbox{Path: path, LockTimeout: 300 * time.Millisecond}, "Subject: x\n\nbody\n")
			if tt.waits {
				if err == nil {
					t.Fatalf("took a lock held by %q", tt.content)
				}
				return
			}
			if err != nil {
				t.Fatalf("the lock of a dead process: %v", err)
			}
			if d := time.Since(start); d > 250*time.Millisecond {
				t.Errorf("waited %v for the lock of a dead process", d)
			}
			if _, err := os.Stat(path + ".lock"); !os.IsNotExist(err) {
				t.Errorf("lock file left: %v", err)
			}
		})
	}
}
