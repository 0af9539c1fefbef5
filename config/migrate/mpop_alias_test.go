package migrate

import (
	"io/fs"
	"strings"
	"testing"
)

// TestMpopDefaultAlias: mpop's "account default : NAME" names the account
// a bare "mpop" polls; it is NAME's mailbox under a second name, and is
// imported as NAME alone, with a comment saying so. Its UIDs are imported
// once.
func TestMpopDefaultAlias(t *testing.T) {
	const rc = `defaults
tls on
account freemail
host pop.freemail.example
user joe
passwordeval "pass show freemail"
delivery maildir ~/Mail/free

account work
host pop.work.example
user joe.smith
password secret
delivery maildir ~/Mail/work

# Set a default account
account default : freemail
`
	r, err := Mpop("/home/u/.mpoprc", rc, "/home/u")
	cfg, out := convert(t, r, err)
	if len(cfg.Accounts) != 2 || cfg.Accounts[0].Name != "freemail" || cfg.Accounts[1].Name != "work" {
		t.Fatalf("want accounts freemail and work:\n%s", out)
	}
	wantNotes(t, out, `account default : freemail made this mpop's default account`, `popfetch fetch freemail`)
	if strings.Contains(out, `name = "default"`) {
		t.Errorf("the alias became an account:\n%s", out)
	}

	// The UIDs of the one mailbox are read once.
	reads := map[string]int{}
	read := func(p string) ([]byte, error) {
		reads[p]++
		if p == "/home/u/.mpop_uidls/joe_at_pop.freemail.example" {
			return []byte(" 1 pop.freemail.example joe\nu1\n"), nil
		}
		return nil, fs.ErrNotExist
	}
	if err := LoadUIDs(r, read); err != nil {
		t.Fatal(err)
	}
	if got := r.Accounts[0].UIDs; len(got) != 1 || got[0].UID != "u1" {
		t.Errorf("freemail's UIDs: %+v", got)
	}
	if n := reads["/home/u/.mpop_uidls/joe_at_pop.freemail.example"]; n != 1 {
		t.Errorf("the UID file was read %d times, want once", n)
	}
}

// TestMpopDefaultNotAlias: an account named default with a mailbox of its
// own, or one that inherits settings but polls another mailbox, stays an
// account; settings the alias adds are noted as not converted.
func TestMpopDefaultNotAlias(t *testing.T) {
	for _, tc := range []struct {
		name, rc  string
		accounts  []string
		wantNotes []string
	}{
		{"own mailbox", "account default\nhost pop.example\nuser a\ntls on\ndelivery maildir /m\n",
			[]string{"default"}, nil},
		{"inherits, other host", "account base\nhost pop.a.example\nuser a\ntls on\ndelivery maildir /m\naccount default : base\nhost pop.b.example\n",
			[]string{"base", "default"}, nil},
		{"inherits, other user", "account base\nhost pop.a.example\nuser a\ntls on\ndelivery maildir /m\naccount default : base\nuser b\n",
			[]string{"base", "default"}, nil},
		{"alias adds a setting", "account base\nhost pop.a.example\nuser a\ntls on\ndelivery maildir /m\naccount default : base\nkeep on\n",
			[]string{"base"}, []string{`account default: keep on: not converted: it was set for the default alias only.`}},
		{"alias of the last of two parents", "account a1\nhost pop.a.example\nuser a\ntls on\ndelivery maildir /m\naccount b1\nhost pop.b.example\nuser b\ntls on\ndelivery maildir /n\naccount default : a1, b1\n",
			[]string{"a1", "b1"}, []string{`account default : a1, b1 made this mpop's default account`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Mpop("/home/u/.mpoprc", tc.rc, "/home/u")
			cfg, out := convert(t, r, err)
			var names []string
			for _, a := range cfg.Accounts {
				names = append(names, a.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.accounts, ",") {
				t.Errorf("accounts %q, want %q:\n%s", names, tc.accounts, out)
			}
			wantNotes(t, out, tc.wantNotes...)
		})
	}
}

// TestImportNotesRelativePaths: a relative path the old tool took from
// its working directory is flagged, since popfetch takes it from the
// configuration file's directory.
func TestImportNotesRelativePaths(t *testing.T) {
	r, err := Mpop("/home/u/.mpoprc", "account a\nhost h\nuser u\ntls on\ndelivery maildir Mail/a\ntls_trust_file /dev/null\n", "/home/u")
	_, out := convert(t, r, err)
	wantNotes(t, out, `maildir "Mail/a" is a relative path: mpop took it from the directory it ran in`)
	if strings.Contains(out, `ca_file "/dev/null" is a relative`) {
		t.Errorf("an absolute path was flagged:\n%s", out)
	}
}
