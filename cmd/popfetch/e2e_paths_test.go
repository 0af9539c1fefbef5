package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/config"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// runBinaryIn runs the built popfetch in the working directory dir and
// returns its exit code, standard output and standard error.
func runBinaryIn(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, popfetchBinary(t), args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run popfetch: %v", err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// TestRelativePathsFromAnotherDirectory: a configuration with relative
// paths (maildir, password_file, an MDA "./script") used by the binary run
// from another working directory, as cron and systemd run it, delivers
// next to the configuration file; config check shows the absolute paths.
func TestRelativePathsFromAnotherDirectory(t *testing.T) {
	srv, err := pop3test.NewServer(pop3test.Config{User: "alice", Password: "wonderland"},
		pop3test.Message{UID: "u1", Data: []byte("Subject: one\n\nbody 1\n")},
		pop3test.Message{UID: "u2", Data: []byte("Subject: two\n\nbody 2\n")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	confDir, elsewhere := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(confDir, "pw"), []byte("wonderland\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\ncat >> \"$(dirname \"$0\")/piped.txt\"\n"
	if err := os.WriteFile(filepath.Join(confDir, "save.sh"), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(srv.Addr(), ":")
	text := `[[account]]
name = "rel"
server = "` + host + `"
port = ` + port + `
tls = "none"
allow_insecure_auth = true
user = "alice"
password_file = "pw"
maildir = "Mail/inbox"
keep = true
`
	cfgPath := filepath.Join(confDir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(confDir, "state")

	code, _, stderr := runBinaryIn(t, elsewhere, "--config", cfgPath, "--state-dir", state, "fetch")
	if code != exitMail {
		t.Fatalf("exit %d, want %d\n%s", code, exitMail, stderr)
	}
	if n := countFiles(t, filepath.Join(confDir, "Mail/inbox/new")); n != 2 {
		t.Errorf("%d messages next to the configuration, want 2\n%s", n, stderr)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "Mail")); err == nil {
		t.Errorf("a Maildir was made in the working directory")
	}

	// config check, run from elsewhere with a relative --config, shows
	// where the mail goes.
	rel, err := filepath.Rel(elsewhere, cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runBinaryIn(t, elsewhere, "--config", rel, "config", "check")
	if code != 0 {
		t.Fatalf("config check: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{
		"maildir = " + config.Quote(filepath.Join(confDir, "Mail/inbox")),
		"password_file = " + config.Quote(filepath.Join(confDir, "pw")),
		"resolved against " + config.Quote(confDir),
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("config check lacks %s:\n%s", want, stdout)
		}
	}

	// An MDA given as "./save.sh" is the one beside the configuration.
	mda := strings.Replace(text, `maildir = "Mail/inbox"`, `mda = ["./save.sh"]`, 1)
	if err := os.WriteFile(cfgPath, []byte(mda), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runBinaryIn(t, elsewhere, "--config", cfgPath, "--state-dir", filepath.Join(confDir, "state2"), "fetch")
	if code != exitMail {
		t.Fatalf("mda run: exit %d, want %d\n%s", code, exitMail, stderr)
	}
	piped, err := os.ReadFile(filepath.Join(confDir, "piped.txt"))
	if err != nil || !bytes.Contains(piped, []byte("body 2")) {
		t.Errorf("the MDA beside the configuration did not get the mail: %v %q\n%s", err, piped, stderr)
	}

	// A first-time user's wrong relative path: the error names where
	// popfetch looked.
	bad := strings.Replace(text, `password_file = "pw"`, `password_file = "pw"`+"\nca_file = \"certs/ca.pem\"", 1)
	bad = strings.Replace(bad, "tls = \"none\"\n", "", 1)
	if err := os.WriteFile(cfgPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runBinaryIn(t, elsewhere, "--config", cfgPath, "config", "check")
	if code != exitConfig || !strings.Contains(stderr, filepath.Join(confDir, "certs/ca.pem")) {
		t.Errorf("bad ca_file: exit %d, want %d and the absolute path:\n%s", code, exitConfig, stderr)
	}
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Logf("read %s: %v", dir, err)
		return 0
	}
	return len(entries)
}
