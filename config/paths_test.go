package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestRelativePathsResolveAgainstConfigDir: every path-valued key that is
// relative is taken from the configuration file's directory, not the
// working directory (cron's is $HOME, systemd's is /).
func TestRelativePathsResolveAgainstConfigDir(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"ca.pem", "c.pem", "c.key"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("SUB", "sub")
	home, _ := os.UserHomeDir()
	base := `
[[account]]
name = "a"
server = "pop.example.com"
user = "u"
ca_file = "ca.pem"
client_cert = "./c.pem"
client_key = "c.key"
`
	tests := []struct {
		name, keys string
		get        func(Account) any
		want       any
	}{
		{"maildir", "password = 'x'\nmaildir = 'Mail/inbox'\n", func(a Account) any { return a.Maildir }, filepath.Join(dir, "Mail/inbox")},
		{"maildir dot-dot", "password = 'x'\nmaildir = '../Mail'\n", func(a Account) any { return a.Maildir }, filepath.Join(filepath.Dir(dir), "Mail")},
		{"maildir $VAR relative", "password = 'x'\nmaildir = '$SUB/Mail'\n", func(a Account) any { return a.Maildir }, filepath.Join(dir, "sub/Mail")},
		{"maildir ~ stays home", "password = 'x'\nmaildir = '~/Mail'\n", func(a Account) any { return a.Maildir }, filepath.Join(home, "Mail")},
		{"maildir absolute", "password = 'x'\nmaildir = '/srv/Mail'\n", func(a Account) any { return a.Maildir }, "/srv/Mail"},
		{"mbox", "password = 'x'\nmbox = 'inbox.mbox'\n", func(a Account) any { return a.Mbox }, filepath.Join(dir, "inbox.mbox")},
		{"ca_file", "password = 'x'\nmbox = '/m'\n", func(a Account) any { return a.CAFile }, filepath.Join(dir, "ca.pem")},
		{"client_cert", "password = 'x'\nmbox = '/m'\n", func(a Account) any { return a.ClientCert }, filepath.Join(dir, "c.pem")},
		{"client_key", "password = 'x'\nmbox = '/m'\n", func(a Account) any { return a.ClientKey }, filepath.Join(dir, "c.key")},
		{"password_file", "password_file = 'secret/pw'\nmbox = '/m'\n", func(a Account) any { return a.Password.file }, filepath.Join(dir, "secret/pw")},
		{"password_command ./prog", "password_command = ['./getpw', 'rel/arg']\nmbox = '/m'\n", func(a Account) any { return a.Password.command }, []string{filepath.Join(dir, "getpw"), "rel/arg"}},
		{"password_command bare name", "password_command = ['pass', 'show', 'x']\nmbox = '/m'\n", func(a Account) any { return a.Password.command }, []string{"pass", "show", "x"}},
		{"mda ./prog", "password = 'x'\nmda = ['./deliver.sh', '%T']\n", func(a Account) any { return a.MDA }, []string{filepath.Join(dir, "deliver.sh"), "%T"}},
		{"mda bin/prog", "password = 'x'\nmda = 'bin/filter -x out/dir'\n", func(a Account) any { return a.MDA }, []string{filepath.Join(dir, "bin/filter"), "-x", "out/dir"}},
		{"mda bare name", "password = 'x'\nmda = ['procmail', '-d', '%T']\n", func(a Account) any { return a.MDA }, []string{"procmail", "-d", "%T"}},
		{"mda absolute", "password = 'x'\nmda = ['/usr/bin/procmail']\n", func(a Account) any { return a.MDA }, []string{"/usr/bin/procmail"}},
		{"refresh_token_file", "mbox = '/m'\n[account.oauth2]\nprovider = 'google'\nclient_id = 'id'\nrefresh_token_file = 'tok.json'\n", func(a Account) any { return a.OAuth2.RefreshTokenFile }, filepath.Join(dir, "tok.json")},
		{"refresh_token_file unset", "mbox = '/m'\n[account.oauth2]\nprovider = 'google'\nclient_id = 'id'\n", func(a Account) any { return a.OAuth2.RefreshTokenFile }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "config.toml")
			if err := os.WriteFile(path, []byte(base+tc.keys), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Chdir(t.TempDir()) // somewhere else: the working directory must not matter
			cfg, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.get(cfg.Accounts[0]); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if cfg.Dir != dir {
				t.Errorf("Dir %q, want %q", cfg.Dir, dir)
			}
		})
	}
}

// TestRelativeConfigPathAndSymlink: a relative --config is taken from the
// working directory at start; a configuration reached through a symbolic
// link resolves against the link's directory, where the user named it.
func TestRelativeConfigPathAndSymlink(t *testing.T) {
	root := t.TempDir()
	real, link := filepath.Join(root, "dotfiles"), filepath.Join(root, "conf")
	for _, d := range []string{real, link} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	text := "[[account]]\nname='a'\nserver='s'\nuser='u'\npassword='x'\nmaildir='Mail'\n"
	if err := os.WriteFile(filepath.Join(real, "popfetch.toml"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(real, "popfetch.toml"), filepath.Join(link, "config.toml")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(root)
	cfg, err := Load("conf/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Accounts[0].Maildir, filepath.Join(link, "Mail"); got != want {
		t.Errorf("maildir %q, want %q", got, want)
	}
}

// TestRelativePathErrorsNameTheResolvedPath: a first-time user who gets a
// relative ca_file wrong learns where popfetch looked.
func TestRelativePathErrorsNameTheResolvedPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	text := "[[account]]\nname='a'\nserver='s'\nuser='u'\npassword='x'\nmaildir='Mail'\nca_file='certs/ca.pem'\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "certs/ca.pem")) {
		t.Fatalf("error %v does not name %s", err, filepath.Join(dir, "certs/ca.pem"))
	}
}

// TestDumpShowsAbsolutePaths: config check prints the resolved paths and
// the directory they were resolved against.
func TestDumpShowsAbsolutePaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	text := "[[account]]\nname='a'\nserver='s'\nuser='u'\npassword_file='pw'\nmaildir='Mail/x'\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Dump(&out, cfg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"maildir = " + Quote(filepath.Join(dir, "Mail/x")),
		"password_file = " + Quote(filepath.Join(dir, "pw")),
		"resolved against " + Quote(dir),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dump lacks %s:\n%s", want, out.String())
		}
	}
	// The dump parses back to the same paths wherever it is put.
	again, err := Parse(filepath.Join(t.TempDir(), "elsewhere.toml"), out.String())
	if err != nil {
		t.Fatal(err)
	}
	if again.Accounts[0].Maildir != cfg.Accounts[0].Maildir {
		t.Errorf("dump parsed elsewhere: maildir %q", again.Accounts[0].Maildir)
	}
}

// TestRelativePathsRefusedInDirOthersCanWrite: a configuration file in a
// directory other users can write in (/tmp, a group-writable one) does
// not take relative paths from it: anyone could put a ca_file, a
// password_file or an mda program of theirs there first. Absolute and ~/
// paths are taken as written.
func TestRelativePathsRefusedInDirOthersCanWrite(t *testing.T) {
	for _, mode := range []os.FileMode{0o1777, 0o775} {
		dir := filepath.Join(t.TempDir(), "shared")
		os.Mkdir(dir, 0o700)
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "config.toml")
		for _, keys := range []string{"ca_file = 'ca.pem'\nmbox = '/m'", "mda = ['./deliver.sh']", "password_file = 'pw'\nmbox = '/m'\n"} {
			text := "[[account]]\nname = 'a'\nserver = 'pop.example.com'\nuser = 'u'\npassword_command = 'pass x'\n" + keys + "\n"
			if strings.Contains(keys, "password_file") {
				text = strings.Replace(text, "password_command = 'pass x'\n", "", 1)
			}
			os.WriteFile(path, []byte(text), 0o600)
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), "other users can write in") {
				t.Errorf("mode %04o, %q: %v", mode, keys, err)
			}
		}
		ca := filepath.Join(t.TempDir(), "ca.pem")
		os.WriteFile(ca, []byte("x"), 0o600)
		os.WriteFile(path, []byte("[[account]]\nname = 'a'\nserver = 'pop.example.com'\nuser = 'u'\npassword_command = 'pass x'\n"+
			"ca_file = '"+ca+"'\nmaildir = '~/Mail'\n"), 0o600)
		if _, err := Load(path); err != nil {
			t.Errorf("mode %04o, absolute paths: %v", mode, err)
		}
	}
}
