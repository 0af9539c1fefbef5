package migrate

import (
	"bytes"
	"errors"
	"io/fs"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/config"
)

// convert writes r and parses it back with popfetch's own config parser:
// every conversion must be a valid configuration.
func convert(t *testing.T, r *Result, err error) (*config.Config, string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Write(&b, r); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("converted.toml", b.String())
	if err != nil {
		t.Fatalf("the conversion is not a valid config: %v\n%s", err, b.String())
	}
	return cfg, b.String()
}

func wantNotes(t *testing.T, out string, notes ...string) {
	t.Helper()
	flat := strings.Join(strings.Fields(strings.ReplaceAll(out, "\n#  ", " ")), " ")
	for _, n := range notes {
		if !strings.Contains(flat, n) {
			t.Errorf("the output lacks the comment %q:\n%s", n, out)
		}
	}
}

func TestFetchmail(t *testing.T) {
	const rc = `# a .fetchmailrc
set daemon 300
set postmaster "postmaster"
set no bouncemail
set invisible
set idfile "~/state/fetchids"

defaults proto pop3 timeout 60

poll pop.example.com with proto POP3 port 995 interval 2, auth password:
  user "me@example.com" there with password "s3cr\"et" is alice here
  options ssl keep fetchall limit 1000000 limitflush sslproto TLS1.3+ sslfingerprint "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89" no mimedecode
  mda "/usr/bin/procmail -d %T"

poll pop.example.net via 192.0.2.7 auth cram-md5
  user bob pass x is bob here fetchlimit 50 limit 5000 sslcertfile /etc/passwd sslcommonname pop.example.net
  mda "cat >> '%T'.mbox"
  user carol pass y lmtp smtphost /run/dovecot/lmtp

skip old.example.org user dave pass z sslproto ''
poll imap.example.org proto imap user x pass y
poll multi.example.org envelope X-Envelope-To localdomains example.org
  user mailbox pass w to * here preconnect "ssh-add" stripcr
`
	r, err := Fetchmail("/home/u/.fetchmailrc", rc, "/home/u")
	cfg, out := convert(t, r, err)
	if len(cfg.Accounts) != 4 { // the skip entry is commented out, IMAP left out
		t.Fatalf("%d accounts, want 4:\n%s", len(cfg.Accounts), out)
	}
	a := cfg.Accounts[0]
	if a.Name != "pop.example.com" || a.Server != "pop.example.com" || a.Port != 995 || a.TLS != config.TLSImplicit ||
		a.User != "me@example.com" || !a.Keep || !a.FetchAll || a.DeleteLargerThan != 1000000 || a.SizeLimit != 0 ||
		a.Recipient != "alice" || !reflect.DeepEqual(a.MDA, []string{"/usr/bin/procmail", "-d", "%T"}) ||
		a.Interval != 10*time.Minute || a.Timeout != time.Minute || a.AddReceived || a.Auth != config.AuthUser ||
		a.TLSMinVersion == 0 {
		t.Errorf("pop.example.com: %+v", a)
	}
	b, c := cfg.Accounts[1], cfg.Accounts[2]
	if b.Name != "bob@pop.example.net" || b.Server != "192.0.2.7" || b.TLS != config.TLSStartTLS || b.Port != 110 ||
		b.FetchLimit != 50 || b.SizeLimit != 5000 || b.CAFile != "/etc/passwd" || b.TLSServerName != "pop.example.net" ||
		b.Auth != config.AuthCRAMMD5 || !reflect.DeepEqual(b.MDA, []string{"/bin/sh", "-c", `cat >> "$2".mbox`, "sh", "%F", "%T"}) {
		t.Errorf("bob: %+v", b)
	}
	if c.Name != "carol@pop.example.net" || c.LMTP != "/run/dovecot/lmtp" {
		t.Errorf("carol: %+v", c)
	}
	m := cfg.Accounts[3]
	if !reflect.DeepEqual(m.MDA, []string{"/usr/sbin/sendmail", "-i", "-f", "%F", "--", "%T"}) {
		t.Errorf("multi: %+v", m)
	}
	wantNotes(t, out,
		`# It holds passwords: save it with mode 600`,
		`set postmaster: not converted: popfetch never bounces mail`,
		`set no bouncemail: not converted`,
		`sslfingerprint AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89: not converted: this is an MD5 fingerprint`,
		`poll imap.example.org proto imap: left out: popfetch fetches POP3 only.`,
		`envelope X-Envelope-To: not converted: multidrop`,
		`localdomains example.org: not converted: multidrop`,
		`preconnect ssh-add: not converted: run it before or after popfetch`,
		`stripcr: not converted: popfetch delivers each message as the server sent it`,
		`mda "cat >> '%T'.mbox" ran through /bin/sh`,
		`forwarded by SMTP to localhost`,
		`# [[account]]`, `# name = "old.example.org"`, `# tls = "none"`,
		`sslproto '': TLS was off`,
	)
	if strings.Contains(out, "mimedecode") {
		t.Errorf("no mimedecode is popfetch's behaviour: no comment wanted:\n%s", out)
	}
	if r.Accounts[0].UIDFile != "/home/u/state/fetchids" {
		t.Errorf("UID file %q", r.Accounts[0].UIDFile)
	}
}

func TestFetchmailErrors(t *testing.T) {
	for _, rc := range []string{
		"",
		"poll",
		`poll x user "unterminated`,
		"user x",
		"poll x frobnicate",
		"set daemon soon\npoll x user y",
		"poll imap.example.org proto imap user x",
	} {
		if _, err := Fetchmail("rc", rc, "/h"); err == nil {
			t.Errorf("%q: no error", rc)
		}
	}
}

func TestMpop(t *testing.T) {
	const rc = `# ~/.mpoprc
defaults
tls on
keep on
uidls_file ~/.mpop_uidls/%U_at_%H

account work
host pop.example.com
user me@example.com
passwordeval "pass show mail | head -1"
auth scram-sha-256
tls_starttls off
tls_fingerprint 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF
killsize 10m
skipsize 500k
only_new off
received_header off
timeout 30
delivery maildir ~/Mail/work

account work2 : work
host pop2.example.com
keep off
delivery mda /usr/bin/procmail -f '%F'

account plain
tls off
host 192.0.2.1
user u
password "p\"w"
delivery mbox ~/mbox
filter /usr/local/bin/check-spam
tls_priorities NORMAL
`
	r, err := Mpop("/home/u/.mpoprc", rc, "/home/u")
	cfg, out := convert(t, r, err)
	if len(cfg.Accounts) != 3 {
		t.Fatalf("%d accounts:\n%s", len(cfg.Accounts), out)
	}
	w, w2, p := cfg.Accounts[0], cfg.Accounts[1], cfg.Accounts[2]
	if w.Server != "pop.example.com" || w.TLS != config.TLSImplicit || w.Port != 995 || w.Auth != config.AuthSCRAMSHA256 ||
		w.TLSFingerprint == "" || w.DeleteLargerThan != 10<<20 || w.SizeLimit != 500<<10 || !w.FetchAll || w.AddReceived ||
		w.Timeout != 30*time.Second || w.Maildir != "/home/u/Mail/work" || !w.Keep {
		t.Errorf("work: %+v", w)
	}
	if w2.Server != "pop2.example.com" || w2.User != "me@example.com" || w2.Keep || w2.TLS != config.TLSImplicit ||
		!reflect.DeepEqual(w2.MDA, []string{"/usr/bin/procmail", "-f", "%F"}) {
		t.Errorf("work2 (inherits work): %+v", w2)
	}
	if p.TLS != config.TLSNone || !p.AllowInsecureAuth || p.Port != 110 || p.Mbox != "/home/u/mbox" {
		t.Errorf("plain: %+v", p)
	}
	wantNotes(t, out, `filter /usr/local/bin/check-spam: not converted: popfetch has no kill filter`,
		`tls_priorities NORMAL: not converted`, `tls off (mpop's default)`, `password_command = ["/bin/sh", "-c", "pass show mail | head -1", "sh", "%F", "%T"]`)
	if r.Accounts[0].UIDFile != "/home/u/.mpop_uidls/me@example.com_at_pop.example.com" {
		t.Errorf("UID file %q", r.Accounts[0].UIDFile)
	}
}

func TestGetmail(t *testing.T) {
	const rc1 = `[retriever]
type = SimplePOP3SSLRetriever
server = pop.gmail.com
username = me@gmail.com
password_command = ("/usr/bin/secret-tool", "lookup", "mail", "gmail")
ssl_fingerprints = ("00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF",)

[destination]
type = MDA_external
path = /usr/bin/procmail
arguments = ("-f", "%(sender)", "-a", "%(local)")
unixfrom = true

[options]
delete = false
read_all = false
delete_after = 30
delivered_to = false
message_log = ~/.getmail/log
max_messages_per_session = 100
`
	const rc2 = `[retriever]
type = SimplePOP3Retriever
server = 192.0.2.1
port = 1110
username = u
password = pw
[destination]
type = Mboxrd
path = ~/mbox
[options]
delete = true
`
	const rc3 = "[retriever]\ntype = SimpleIMAPSSLRetriever\nserver = imap.example.com\nusername = u\n[destination]\ntype = Maildir\npath = ~/Mail/\n"
	r, err := Getmail([]string{"/home/u/.getmail/getmailrc", "/home/u/.getmail/getmailrc-home", "/home/u/.getmail/imap"},
		[]string{rc1, rc2, rc3}, "/home/u")
	cfg, out := convert(t, r, err)
	if len(cfg.Accounts) != 2 {
		t.Fatalf("%d accounts:\n%s", len(cfg.Accounts), out)
	}
	g, h := cfg.Accounts[0], cfg.Accounts[1]
	if g.Name != "me@gmail.com@pop.gmail.com" || g.TLS != config.TLSImplicit || g.Port != 995 || !g.Keep ||
		g.DeleteAfter != 30*24*time.Hour || g.FetchAll || g.DeliveredTo || !g.ReturnPath || g.FetchLimit != 100 ||
		!reflect.DeepEqual(g.MDA, []string{"/usr/bin/procmail", "-f", "%F", "-a", "%T"}) || g.TLSFingerprint == "" {
		t.Errorf("gmail: %+v", g)
	}
	if h.Name != "home" || h.TLS != config.TLSNone || h.Port != 1110 || h.Keep || !h.FetchAll || !h.DeliveredTo || h.Mbox != "/home/u/mbox" {
		t.Errorf("home: %+v", h)
	}
	wantNotes(t, out, `type = SimpleIMAPSSLRetriever: left out`, `[options] message_log = ~/.getmail/log: not converted`,
		`[destination] unixfrom = true: not converted`, `read_all is true (getmail's default)`)
	if r.Accounts[0].UIDFile != "/home/u/.getmail/oldmail-pop.gmail.com-995-me@gmail.com" {
		t.Errorf("UID file %q", r.Accounts[0].UIDFile)
	}
}

func TestLoadUIDs(t *testing.T) {
	files := map[string]string{
		// As fetchmail 6.4 writes it.
		"/h/.fetchids": "alice@127.0.0.1 000000016b02d0e5\nalice@127.0.0.1 000000026b02d0e5\nbob@127.0.0.1 x\nme@example.com@pop.example.com u1\n",
		// As mpop 1.4 writes it.
		"/h/.mpop_uidls/alice_at_127.0.0.1": "# This file was generated by mpop version 1.4.18.\n#\n# Lines starting with a space begin a new UID list and have\n" +
			"#\n 2 127.0.0.1 alice\n000000016b02d0e5\n000000026b02d0e5\n 1 127.0.0.1 bob\nb1\n",
		// As getmail6 6.18 writes it.
		"/h/.getmail/oldmail-127.0.0.1-110-alice": "000000096b02d0ef\x001795346671\n000000056b02d0ef\x001795346671\n",
	}
	read := func(p string) ([]byte, error) {
		if d, ok := files[p]; ok {
			return []byte(d), nil
		}
		return nil, fs.ErrNotExist
	}
	for _, tc := range []struct {
		tool, user, server, file string
		want                     []string
		when                     time.Time
	}{
		{"fetchmail", "alice", "127.0.0.1", "/h/.fetchids", []string{"000000016b02d0e5", "000000026b02d0e5"}, time.Time{}},
		{"fetchmail", "me@example.com", "POP.example.com", "/h/.fetchids", []string{"u1"}, time.Time{}},
		{"mpop", "alice", "127.0.0.1", "/h/.mpop_uidls/alice_at_127.0.0.1", []string{"000000016b02d0e5", "000000026b02d0e5"}, time.Time{}},
		{"getmail", "alice", "127.0.0.1", "/h/.getmail/oldmail-127.0.0.1-110-alice", []string{"000000056b02d0ef", "000000096b02d0ef"}, time.Unix(1795346671, 0)},
		{"mpop", "alice", "127.0.0.1", "/h/missing", nil, time.Time{}},
	} {
		a := &Account{User: tc.user, Server: tc.server, UIDFile: tc.file}
		if err := LoadUIDs(&Result{Tool: tc.tool, Accounts: []*Account{a}}, read); err != nil {
			t.Fatalf("%s: %v", tc.tool, err)
		}
		var got []string
		for _, u := range a.UIDs {
			got = append(got, u.UID)
			if !u.Seen.Equal(tc.when) {
				t.Errorf("%s: %s seen %v, want %v", tc.tool, u.UID, u.Seen, tc.when)
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s %s@%s: UIDs %q, want %q", tc.tool, tc.user, tc.server, got, tc.want)
		}
		if tc.want == nil && (len(a.Notes) == 0 || !strings.Contains(a.Notes[0], "does not exist")) {
			t.Errorf("missing file not noted: %q", a.Notes)
		}
	}
	bad := &Account{UIDFile: "/bad"}
	files["/bad"] = " 5 127.0.0.1 alice\nonly-one\n"
	if err := LoadUIDs(&Result{Tool: "mpop", Accounts: []*Account{bad}}, read); err == nil {
		t.Error("a truncated mpop UID list was accepted")
	}
	if err := LoadUIDs(&Result{Tool: "mpop", Accounts: []*Account{{UIDFile: "/x"}}}, func(string) ([]byte, error) {
		return nil, errors.New("boom")
	}); err == nil {
		t.Error("a read error was not reported")
	}
}

// FuzzFetchmailrc: no input makes the rc parser panic, and whatever it
// converts is a valid popfetch configuration.
func FuzzFetchmailrc(f *testing.F) {
	f.Add("poll pop.example.com proto pop3 user me pass x is me here keep ssl mda 'procmail -d %T'")
	f.Add("set daemon 60\ndefaults timeout 30\nskip a user b pass c sslproto ''\n")
	f.Add(`poll "x y" user "a\"b" there password 'p\'q' limit 5 limitflush smtphost h/25 lmtp`)
	f.Fuzz(func(t *testing.T, rc string) {
		r, err := Fetchmail("rc", rc, "/h")
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := Write(&b, r); err != nil {
			t.Fatal(err)
		}
		enabled := 0
		for _, a := range r.Accounts {
			if !a.Disabled {
				enabled++
			}
		}
		if enabled == 0 {
			return
		}
		if _, err := config.Parse("c.toml", b.String()); err != nil && !strings.Contains(err.Error(), "account[") {
			t.Fatalf("the conversion does not parse: %v\n%s", err, b.String())
		}
	})
}

// TestFetchmailDefaultsApplyForward: a defaults entry applies to the poll
// entries after it, as in fetchmail, not to those before.
func TestFetchmailDefaultsApplyForward(t *testing.T) {
	r, err := Fetchmail("rc", "poll a user u pass p\ndefaults keep\npoll b user u pass p\ndefaults fetchall\npoll c user u pass p nokeep\n", "/h")
	cfg, out := convert(t, r, err)
	want := []struct{ keep, all bool }{{false, false}, {true, false}, {false, true}}
	for i, w := range want {
		if a := cfg.Accounts[i]; a.Keep != w.keep || a.FetchAll != w.all {
			t.Errorf("%s: keep %v fetch_all %v, want %v %v\n%s", a.Name, a.Keep, a.FetchAll, w.keep, w.all, out)
		}
	}
}

// TestShellParams: %F and %T become $1 and $2 quoted for where they
// stand, so that the shell makes each exactly one word. The old
// replacement turned "<%F>" into "<"$1">", $1 unquoted: a sender such as
// <"a -oQ/tmp/evil"@x.example> became extra arguments.
func TestShellParams(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`procmail -f %F | x`, `procmail -f "$1" | x`},
		{`procmail -f "<%F>" -d %T | x`, `procmail -f "<$1>" -d "$2" | x`},
		{`procmail -f '<%F>' > x`, `procmail -f '<'"$1"'>' > x`},
		{`cat >> '%T'.mbox`, `cat >> "$2".mbox`},
		{`cat >> "%T".mbox`, `cat >> "$2".mbox`},
		{`echo "it's %F" > x`, `echo "it's $1" > x`},
		{`echo '"%F"' > x`, `echo '"'"$1"'"' > x`},
		{`printf '100%%' %F; x`, `printf '100%%' "$1"; x`},
		{`echo \%F \"%T\" > x`, `echo \%F \""$2"\" > x`},
	} {
		if got := shellParams(tc.in); got != tc.want {
			t.Errorf("shellParams(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// What the shell then makes of it, with a hostile sender.
	evil := `"a -oQ/tmp/evil"@x.example`
	for _, line := range []string{`printf '%s\n' -f "<%F>" | cat`, `printf '%s\n' -f '<%F>' | cat`, `printf '%s\n' -f %F | cat`} {
		argv, viaShell := command(line)
		if !viaShell {
			t.Fatalf("%q: not via the shell", line)
		}
		argv[4], argv[5] = evil, "me"
		out, err := exec.Command(argv[0], argv[1:]...).Output()
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"); len(got) != 2 || got[0] != "-f" || !strings.Contains(got[1], evil) {
			t.Errorf("%q ran as %q: the sender was split into %d words", line, argv[2], len(got)-1)
		}
	}
}
