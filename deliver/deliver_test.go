package deliver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

var errCut = errors.New("connection cut")

// cutReader returns data and then fails, like a RETR stream cut short.
func cutReader(data string) io.Reader {
	return io.MultiReader(strings.NewReader(data), iotest.ErrReader(errCut))
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestMaildirDeliver(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Mail", "inbox")
	md, err := NewMaildir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v %v", sub, fi, err)
		}
	}
	msg := "Subject: hi\n\nbody\n"
	for i := 0; i < 3; i++ {
		if err := deliverOne(context.Background(), md, strings.NewReader(msg), Envelope{}); err != nil {
			t.Fatal(err)
		}
	}
	names := listDir(t, filepath.Join(dir, "new"))
	if len(names) != 3 {
		t.Fatalf("new/ has %v", names)
	}
	if tmp := listDir(t, filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Fatalf("tmp/ not empty: %v", tmp)
	}
	for _, n := range names {
		data, _ := os.ReadFile(filepath.Join(dir, "new", n))
		if string(data) != msg {
			t.Errorf("%s = %q", n, data)
		}
		if fi, _ := os.Stat(filepath.Join(dir, "new", n)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", n, fi.Mode())
		}
		if strings.ContainsAny(n, "/:") {
			t.Errorf("bad Maildir name %q", n)
		}
	}
}

func TestMaildirIncompleteNeverPublished(t *testing.T) {
	dir := t.TempDir()
	md, err := NewMaildir(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = deliverOne(context.Background(), md, cutReader("Subject: partial\n\nhal"), Envelope{})
	if !errors.Is(err, errCut) {
		t.Fatalf("got %v, want the reader's error", err)
	}
	var derr *Error
	if errors.As(err, &derr) {
		t.Errorf("a source failure reported as a delivery failure: %v", err)
	}
	if n := listDir(t, filepath.Join(dir, "new")); len(n) != 0 {
		t.Errorf("incomplete message published: %v", n)
	}
	if n := listDir(t, filepath.Join(dir, "tmp")); len(n) != 0 {
		t.Errorf("incomplete message left in tmp: %v", n)
	}
}

func TestMaildirUnwritable(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores permissions; make new/ a file instead.
		dir := t.TempDir()
		md, err := NewMaildir(dir)
		if err != nil {
			t.Fatal(err)
		}
		os.RemoveAll(filepath.Join(dir, "new"))
		os.WriteFile(filepath.Join(dir, "new"), nil, 0o600)
		err = deliverOne(context.Background(), md, strings.NewReader("x\n"), Envelope{})
		var derr *Error
		if !errors.As(err, &derr) {
			t.Fatalf("got %v, want *Error", err)
		}
		if n := listDir(t, filepath.Join(dir, "tmp")); len(n) != 0 {
			t.Errorf("tmp/ not cleaned: %v", n)
		}
		return
	}
	dir := t.TempDir()
	md, _ := NewMaildir(dir)
	os.Chmod(filepath.Join(dir, "tmp"), 0o500)
	defer os.Chmod(filepath.Join(dir, "tmp"), 0o700)
	var derr *Error
	if err := deliverOne(context.Background(), md, strings.NewReader("x\n"), Envelope{}); !errors.As(err, &derr) {
		t.Fatalf("got %v, want *Error", err)
	}
}

func TestExpand(t *testing.T) {
	tests := []struct {
		argv              []string
		sender, recipient string
		want              []string
	}{
		{[]string{"/usr/bin/procmail", "-f", "%F", "-d", "%T"}, "a@b.c", "me", []string{"/usr/bin/procmail", "-f", "a@b.c", "-d", "me"}},
		{[]string{"x", "--from=%F", "100%%", "%X", "%"}, "a@b", "", []string{"x", "--from=a@b", "100%", "%X", "%"}},
		{[]string{"x", "%F"}, "-oQ/tmp/evil", "me", []string{"x", "_oQ_tmp_evil"}},
		{[]string{"x", "%T"}, "", "me\nDATA", []string{"x", "me_DATA"}},
		{[]string{"sh", "-c", "procmail -f %F %T"}, "a b; rm -rf /", "me", []string{"sh", "-c", "procmail -f a_b__rm_-rf__ me"}},
		{[]string{"x", "-f<%F>"}, `"a -oQ/tmp/evil"@x.example`, "me", []string{"x", "-f<_a_-oQ_tmp_evil_@x.example>"}},
		{[]string{"x", "%F"}, "$(id)`id`'\\\"|&<>*?", "me", []string{"x", "__id__id__________"}},
		{[]string{"x", "%F"}, "jörg+tag=x@münchen.example", "me", []string{"x", "jörg+tag=x@münchen.example"}},
		{[]string{"x", "-f", "%F"}, strings.Repeat("a", 200_000) + "@x", "me", []string{"x", "-f", ""}}, // longer than any address
	}
	for _, tt := range tests {
		if got := Expand(tt.argv, tt.sender, tt.recipient); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Expand(%q, %q, %q) = %q, want %q", tt.argv, tt.sender, tt.recipient, got, tt.want)
		}
	}
}

func TestEnvelopeSender(t *testing.T) {
	tests := []struct{ msg, want string }{
		{"Return-Path: <bounce@list.org>\nFrom: A <a@b.c>\n\nx", "bounce@list.org"},
		{"From: A <a@b.c>\nSubject: s\n\nx", "a@b.c"},
		{"Return-Path: <>\nFrom: a@b.c\n\nx", ""},
		{"Subject: none\n\nFrom: x@y.z\n", ""},
		{"From: \"Long\n Name\" <folded@x.y>\n\n", "folded@x.y"},
		{"From: a@b.c, d@e.f\n\n", "a@b.c"},
		{"garbage without colon\nFrom: a@b.c\n\n", ""},
	}
	for _, tt := range tests {
		if got := envelopeSender(strings.NewReader(tt.msg)); got != tt.want {
			t.Errorf("envelopeSender(%q) = %q, want %q", tt.msg, got, tt.want)
		}
	}
}

// mdaScript writes an executable shell script for an MDA test. The MDA is
// still run without a shell: the script is the program.
func mdaScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mda.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMDA(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	script := mdaScript(t, `printf '%s|%s\n' "$1" "$2" > "`+out+`.args"; cat > "`+out+`"`)
	m := &MDA{Argv: []string{script, "%F", "%T"}, Timeout: 10 * time.Second}
	msg := "Return-Path: <s@x.y>\nSubject: hi\n\nbody\n"
	if err := deliverOne(context.Background(), m, strings.NewReader(msg), Envelope{Recipient: "me"}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if string(got) != msg {
		t.Errorf("MDA got %q", got)
	}
	args, _ := os.ReadFile(out + ".args")
	if string(args) != "s@x.y|me\n" {
		t.Errorf("MDA args %q", args)
	}
}

func TestMDAFailures(t *testing.T) {
	tests := []struct {
		name      string
		script    string
		timeout   time.Duration
		temporary bool
		detail    string
	}{
		{"EX_TEMPFAIL", "cat >/dev/null; echo 'try later' >&2; exit 75", 0, true, "try later"},
		{"exit 1", "cat >/dev/null; exit 1", 0, false, "exit status 1"},
		{"killed by a signal", "kill -9 $$", 0, false, "killed"},
		{"hangs past its timeout", "sleep 30", 300 * time.Millisecond, true, "killed after"},
		{"child hangs past its timeout", "sleep 30 & wait", 300 * time.Millisecond, true, "killed after"},
		{"reads part of the message, exit 0", "head -c 5 >/dev/null", 0, false, "read only 5 of the message's 17 octets"},
		{"reads nothing, exit 0", "exit 0", 0, false, "read only 0 of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &MDA{Argv: []string{mdaScript(t, tt.script)}, Timeout: tt.timeout}
			start := time.Now()
			err := deliverOne(context.Background(), m, strings.NewReader("Subject: x\n\nbody\n"), Envelope{})
			var derr *Error
			if !errors.As(err, &derr) {
				t.Fatalf("got %v, want *Error", err)
			}
			if derr.Temporary != tt.temporary {
				t.Errorf("Temporary = %v, want %v (%v)", derr.Temporary, tt.temporary, err)
			}
			if !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("error %q lacks %q", err, tt.detail)
			}
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestMDANotFound(t *testing.T) {
	m := &MDA{Argv: []string{"/nonexistent/procmail"}}
	var derr *Error
	if err := deliverOne(context.Background(), m, strings.NewReader("x\n"), Envelope{}); !errors.As(err, &derr) || derr.Temporary {
		t.Fatalf("got %v, want permanent *Error", err)
	}
}

func TestMDAIncompleteNeverPiped(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	m := &MDA{Argv: []string{mdaScript(t, "cat > "+marker)}}
	err := deliverOne(context.Background(), m, cutReader("Subject: partial\n\nhal"), Envelope{})
	if !errors.Is(err, errCut) {
		t.Fatalf("got %v, want the reader's error", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("MDA was run with an incomplete message")
	}
}

func TestTraceHeader(t *testing.T) {
	tr := Trace{From: "pop.example.com", FromAddr: "192.0.2.1", By: "laptop", With: "POP3S", ID: "uid(1)\r\nX: y", For: "me@example.com",
		Date: time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)}
	want := "Received: from pop.example.com (192.0.2.1)\n\tby laptop with POP3S id uid?1???X:?y\n\tfor <me@example.com>; Sun, 22 Nov 2026 06:00:00 +0000\n"
	if got := tr.Header(); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

func TestMaildirStagedNotVisibleUntilPublished(t *testing.T) {
	for _, useTmp := range []bool{false, true} {
		t.Run(fmt.Sprintf("tmp/=%v", useTmp), func(t *testing.T) {
			dir := t.TempDir()
			md, err := NewMaildir(dir)
			if err != nil {
				t.Fatal(err)
			}
			md.noTmp.Store(useTmp) // true: as on a file system without O_TMPFILE
			ctx := context.Background()
			var staged []Staged
			for i := 0; i < 3; i++ {
				st, err := md.Stage(ctx, strings.NewReader(fmt.Sprintf("Subject: %d\n\nx\n", i)), Envelope{})
				if err != nil {
					t.Fatal(err)
				}
				staged = append(staged, st)
			}
			if n := listDir(t, filepath.Join(dir, "new")); len(n) != 0 {
				t.Fatalf("staged messages visible: %v", n)
			}
			wantTmp := 0
			if md.noTmp.Load() {
				wantTmp = 3
			}
			if n := listDir(t, filepath.Join(dir, "tmp")); len(n) != wantTmp {
				t.Fatalf("tmp/ holds %v, want %d files", n, wantTmp)
			}
			// Publish two concurrently, abort the third.
			errs := make(chan error, 2)
			for _, st := range staged[:2] {
				go func() { errs <- st.Publish(ctx) }()
			}
			for i := 0; i < 2; i++ {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			staged[2].Abort()
			staged[0].Abort() // after Publish: nothing happens
			if err := md.Flush(); err != nil {
				t.Fatal(err)
			}
			names := listDir(t, filepath.Join(dir, "new"))
			if len(names) != 2 {
				t.Fatalf("new/ holds %v", names)
			}
			for _, n := range names {
				data, _ := os.ReadFile(filepath.Join(dir, "new", n))
				if !strings.HasPrefix(string(data), "Subject: ") {
					t.Errorf("%s holds %q", n, data)
				}
			}
			if n := listDir(t, filepath.Join(dir, "tmp")); len(n) != 0 {
				t.Errorf("tmp/ holds %v", n)
			}
			if err := staged[1].Publish(ctx); err == nil {
				t.Error("second Publish succeeded")
			}
		})
	}
}

func TestMDARunsOneAtATime(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, "running")
	// The script fails if another instance is running at the same time.
	script := mdaScript(t, fmt.Sprintf(`if ! mkdir %[1]s 2>/dev/null; then exit 1; fi; cat >/dev/null; sleep 0.05; rmdir %[1]s`, lock))
	m := &MDA{Argv: []string{script}, Timeout: 10 * time.Second}
	ctx := context.Background()
	var staged []Staged
	for i := 0; i < 4; i++ {
		st, err := m.Stage(ctx, strings.NewReader("x\n"), Envelope{})
		if err != nil {
			t.Fatal(err)
		}
		staged = append(staged, st)
	}
	errs := make(chan error, len(staged))
	for _, st := range staged {
		go func() { errs <- st.Publish(ctx) }()
	}
	for range staged {
		if err := <-errs; err != nil {
			t.Errorf("concurrent MDA runs: %v", err)
		}
	}
}

func TestMaildirSpares(t *testing.T) {
	dir := t.TempDir()
	md, err := NewMaildir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		if err := deliverOne(ctx, md, strings.NewReader(fmt.Sprintf("Subject: %d\n\nx\n", i)), Envelope{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := listDir(t, filepath.Join(dir, "new")); len(n) != 50 {
		t.Fatalf("new/ holds %d", len(n))
	}
	// Spares made ahead are unnamed: nothing extra is visible, and Close
	// releases them.
	time.Sleep(50 * time.Millisecond)
	if err := md.Close(); err != nil {
		t.Fatal(err)
	}
	if len(md.spares) != 0 {
		t.Errorf("%d spares left open after Close", len(md.spares))
	}
	if n := listDir(t, filepath.Join(dir, "new")); len(n) != 50 {
		t.Errorf("new/ holds %d after Close", len(n))
	}
	if n := listDir(t, filepath.Join(dir, "tmp")); len(n) != 0 {
		t.Errorf("tmp/ holds %v", n)
	}
}

// deliverOne stages, publishes and flushes one message, as a caller that
// delivers a single message does.
func deliverOne(ctx context.Context, d Deliverer, r io.Reader, env Envelope) error {
	st, err := d.Stage(ctx, r, env)
	if err != nil {
		return err
	}
	if err := st.Publish(ctx); err != nil {
		st.Abort()
		return err
	}
	return d.Flush()
}

// TestMboxFreeSpaceSharedFileSystem: with the spool and the mbox on one
// file system a message is there twice, so the room reported is half.
func TestMboxFreeSpaceSharedFileSystem(t *testing.T) {
	dir := t.TempDir()
	md := &Maildir{dir: dir}
	whole, err := md.FreeSpace()
	if err != nil {
		t.Fatal(err)
	}
	m := &Mbox{Path: filepath.Join(dir, "inbox"), SpoolDir: dir}
	half, err := m.FreeSpace()
	if err != nil {
		t.Fatal(err)
	}
	// Other writers change the room a little between the two calls.
	if diff := half - whole/2; diff < -(1<<20) || diff > 1<<20 {
		t.Errorf("mbox room %d, file system room %d: want about half", half, whole)
	}
}
