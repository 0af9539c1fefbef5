package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigDumpGoogleRoundTrip: the output of config check for a Gmail
// target with provider = "google", saved as the configuration, still
// asks Google for a refresh token (access_type=offline, prompt=consent),
// which only the provider brings: popfetch auth --target with the dump
// sends the browser to the same address as with the original.
func TestConfigDumpGoogleRoundTrip(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(orig, []byte(`[[account]]
name = "isp"
server = "pop.example.net"
user = "me@example.net"
password_env = "POP_PASSWORD"

[account.gmail]
labels = ["INBOX", "UNREAD", "ISP"]

[account.gmail.oauth2]
provider = "google"
client_id = "1234567890-abc.apps.googleusercontent.com"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, dump, stderr := runBinaryIn(t, dir, "--config", orig, "config", "check")
	if code != 0 {
		t.Fatalf("config check: exit %d\n%s", code, stderr)
	}
	saved := filepath.Join(dir, "dump.toml")
	if err := os.WriteFile(saved, []byte(dump), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, again, stderr := runBinaryIn(t, dir, "--config", saved, "config", "check"); code != 0 {
		t.Fatalf("config check of the dump: exit %d\n%s", code, stderr)
	} else if _, rest, _ := strings.Cut(again, "\n"); !strings.HasSuffix(dump, rest) {
		t.Errorf("the dump of the dump differs:\n%s\nfirst:\n%s", again, dump)
	}
	for _, cfg := range []string{orig, saved} {
		u := authAddress(t, dir, cfg)
		for _, want := range []string{"access_type=offline", "prompt=consent", "gmail.modify", "code_challenge_method=S256"} {
			if !strings.Contains(u, want) {
				t.Errorf("%s: popfetch auth --target sends the browser to %s, without %s", filepath.Base(cfg), u, want)
			}
		}
	}
}

// authAddress runs popfetch auth --target --no-browser for the account
// isp of cfg and returns the address it says to open.
func authAddress(t *testing.T, dir, cfg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, popfetchBinary(t), "--config", cfg, "--state-dir", filepath.Join(dir, "state"),
		"auth", "--target", "--no-browser", "isp")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "https://accounts.google.com/") {
			return line
		}
	}
	t.Fatalf("popfetch auth printed no address to open (%v)", sc.Err())
	return ""
}
