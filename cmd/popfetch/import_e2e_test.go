package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// requireTool skips a test whose peer is not installed, loudly, and only
// outside CI.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must run the %s import test: %s is not installed (apt-get install %s)", name, name, pkg)
		}
		t.Skipf("SKIPPING the %s import test: %s is not installed (apt-get install %s)", name, name, pkg)
	}
	return path
}

// peer is how one of fetchmail, mpop and getmail6 is set up and run in
// keep mode against the private Dovecot, and where it delivers.
type peer struct {
	tool, pkg string
	variant   string   // the subtest's name after the tool's, if the tool has several setups
	rcFile    string   // relative to the home directory
	rc        string   // %[1]d: the POP3 port, %[2]s: the user, %[3]s: the home directory
	argv      []string // %s: the home directory
	asNobody  bool     // getmail refuses to deliver as root
	delivered func(home string) int
}

func maildirCount(dir string) int {
	n := 0
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		n += len(entries)
	}
	return n
}

var peers = []peer{
	{
		tool: "fetchmail", pkg: "fetchmail", rcFile: ".fetchmailrc",
		rc:   "poll 127.0.0.1 port %[1]d proto pop3 uidl\n  user %[2]s pass pw-%[2]s is root here\n  keep sslproto '' mda \"cat >> %[3]s/fetchmail.mbox\"\n",
		argv: []string{"fetchmail", "--nodetach", "--nosyslog", "-f", "%s/.fetchmailrc"},
		delivered: func(home string) int {
			data, _ := os.ReadFile(filepath.Join(home, "fetchmail.mbox"))
			return len(regexp.MustCompile(`(?m)^Message-ID: `).FindAll(data, -1))
		},
	},
	{
		tool: "mpop", pkg: "mpop", rcFile: ".mpoprc",
		rc:        "account default\nhost 127.0.0.1\nport %[1]d\ntls off\nauth user\nuser %[2]s\npassword pw-%[2]s\nkeep on\ndelivery maildir %[3]s/Mail\n",
		argv:      []string{"mpop", "-q", "-C", "%s/.mpoprc", "-a"},
		delivered: func(home string) int { return maildirCount(filepath.Join(home, "Mail")) },
	},
	{
		// mpop's idiom for the account a bare "mpop" polls: one mailbox,
		// two names. It must import as one account, its UIDs once.
		tool: "mpop", pkg: "mpop", rcFile: ".mpoprc", variant: "default-alias",
		rc:        "account box\nhost 127.0.0.1\nport %[1]d\ntls off\nauth user\nuser %[2]s\npassword pw-%[2]s\nkeep on\ndelivery maildir %[3]s/Mail\n\naccount default : box\n",
		argv:      []string{"mpop", "-q", "-C", "%s/.mpoprc"},
		delivered: func(home string) int { return maildirCount(filepath.Join(home, "Mail")) },
	},
	{
		tool: "getmail", pkg: "getmail6", rcFile: ".getmail/getmailrc",
		rc: "[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\nport = %[1]d\nusername = %[2]s\npassword = pw-%[2]s\n" +
			"[destination]\ntype = Maildir\npath = %[3]s/Mail/\n[options]\ndelete = false\nread_all = false\n",
		argv:      []string{"getmail", "--quiet", "--getmaildir", "%s/.getmail"},
		asNobody:  true,
		delivered: func(home string) int { return maildirCount(filepath.Join(home, "Mail")) },
	},
}

// TestImportFromPeers runs the real fetchmail, mpop and getmail6 against
// the private Dovecot in keep mode, imports their configuration and UID
// state, and checks that popfetch, running the converted configuration,
// fetches nothing they fetched, then exactly the one new message.
func TestImportFromPeers(t *testing.T) {
	dc := startDovecot(t)
	for _, p := range peers {
		name := p.tool
		if p.variant != "" {
			name += "-" + p.variant
		}
		t.Run(name, func(t *testing.T) {
			requireTool(t, p.tool, p.pkg)
			e := newE2E(t, dc, "imp-"+name, "none", "")
			e.fill(6, 2000)
			home := filepath.Join(e.dir, "home")
			for _, d := range []string{"Mail/new", "Mail/cur", "Mail/tmp", ".getmail"} {
				if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			rcPath := filepath.Join(home, p.rcFile)
			if err := os.WriteFile(rcPath, []byte(fmt.Sprintf(p.rc, dc.PlainPort, e.user, home)), 0o600); err != nil {
				t.Fatal(err)
			}
			if p.asNobody {
				os.Chmod(filepath.Dir(e.dir), 0o755) // t.TempDir makes it 0700
				os.Chmod(e.dir, 0o755)
				if out, err := exec.Command("chown", "-R", "65534:65534", home).CombinedOutput(); err != nil {
					t.Fatalf("chown: %v %s", err, out)
				}
			}
			// The peer fetches everything and keeps it on the server.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			argv := make([]string, len(p.argv))
			for i, a := range p.argv {
				argv[i] = a
				if bytes.Contains([]byte(a), []byte("%s")) {
					argv[i] = fmt.Sprintf(a, home)
				}
			}
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Env = append(os.Environ(), "HOME="+home)
			if p.asNobody {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", p.tool, err, out)
			}
			n := len(e.sent)
			if got := p.delivered(home); got != n {
				t.Fatalf("%s delivered %d messages, want %d", p.tool, got, n)
			}
			if dc.Count(e.user) != n {
				t.Fatalf("%s did not keep the mail on the server", p.tool)
			}

			// Convert, with the UIDs.
			os.Remove(e.config)
			imp := exec.CommandContext(ctx, e.bin, "--state-dir", filepath.Join(e.dir, "state"),
				"import", p.tool, rcPath, "--uids", "-o", e.config)
			imp.Env = append(os.Environ(), "HOME="+home)
			out, err := imp.CombinedOutput()
			if err != nil {
				t.Fatalf("import: %v\n%s", err, out)
			}
			ms := regexp.MustCompile(`recorded (\d+) UIDs`).FindAllSubmatch(out, -1)
			if len(ms) != 1 || string(ms[0][1]) != strconv.Itoa(n) {
				t.Fatalf("import recorded %q UIDs, want %d for one account:\n%s", ms, n, out)
			}
			if fi, err := os.Stat(e.config); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("the converted config: %v, mode %v", err, fi.Mode())
			}
			converted, _ := os.ReadFile(e.config)
			if code, out := e.run("config", "check"); code != 0 {
				t.Fatalf("config check of the conversion: exit %d\n%s\n%s", code, out, converted)
			}

			// popfetch fetches nothing the peer fetched...
			if code, out := e.run(); code != exitNoMail {
				t.Fatalf("popfetch after the import: exit %d, want %d (no new mail)\n%s\n%s", code, exitNoMail, out, converted)
			}
			if got := p.delivered(home); got != n {
				t.Fatalf("popfetch delivered again: %d messages, want %d", got, n)
			}
			// ... and exactly what is new.
			if err := dc.Deliver(e.user, []byte("From: new@example.com\nMessage-ID: <new@popfetch.test>\nSubject: new\n\nnew\n")); err != nil {
				t.Fatal(err)
			}
			if code, out := e.run(); code != exitMail {
				t.Fatalf("popfetch with one new message: exit %d\n%s\n%s", code, out, converted)
			}
			if got := p.delivered(home); got != n+1 {
				t.Fatalf("after one new message: %d delivered, want %d\n%s", got, n+1, converted)
			}
			if dc.Count(e.user) != n+1 {
				t.Errorf("the converted config does not keep mail on the server, as %s did", p.tool)
			}
		})
	}
}

// TestImportMpopQuotedDelivery: mpop reads a quoted rest of a delivery
// line without its quotes (mpop -P shows delivery = mda /usr/bin/procmail
// -d joe), so the conversion must split the command into its words and
// take the quoted directory as it is, not as a relative path with quotes
// in its name.
func TestImportMpopQuotedDelivery(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "mpoprc")
	text := "account one\nhost pop.example.com\nuser me\ndelivery mda \"/usr/bin/procmail -f %F -d joe\"\n\n" +
		"account two\nhost pop.example.org\nuser me\ndelivery maildir \"/var/mail/My Mail\"\n"
	if err := os.WriteFile(rc, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runBinaryIn(t, dir, "import", "mpop", rc)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		`mda = ["/usr/bin/procmail", "-f", "%F", "-d", "joe"]`,
		`maildir = "/var/mail/My Mail"`,
	} {
		if !bytes.Contains([]byte(stdout), []byte(want)) {
			t.Errorf("output lacks %s:\n%s", want, stdout)
		}
	}
}

// TestImportFetchmailLogNotes: fetchmail's "set logfile" and "set syslog"
// have popfetch's -L and --syslog as their counterparts; the comments on
// them must name those flags, not say that popfetch only logs to standard
// error.
func TestImportFetchmailLogNotes(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "fetchmailrc")
	text := "set logfile /var/log/fm.log\nset syslog\npoll pop.example.com proto pop3 user me password pw is me here ssl\n"
	if err := os.WriteFile(rc, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runBinaryIn(t, dir, "import", "fetchmail", rc)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	flat := regexp.MustCompile(`\n#\s+`).ReplaceAllString(stdout, " ")
	for _, want := range []string{"popfetch -L /var/log/fm.log", "popfetch --syslog"} {
		if !bytes.Contains([]byte(flat), []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}
