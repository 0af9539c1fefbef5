package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/popfetch/popfetch/cmd/internal/measure"
)

// tool is a mail retriever under test.
type tool struct {
	name    string
	version string
	// fetch polls user's mailbox on 127.0.0.1:port once into work/Maildir,
	// keeping the mail on the server if keep is set. Its state lives in
	// work, so that a later call continues where this one left off.
	fetch func(work, user, pass string, port int, keep bool) (measure.Result, error)
	// fetchOnly: the tool cannot keep mail, so it has no row in the
	// no-new-mail cases.
	fetchOnly bool
}

// goFloorRow names the tool gofloor (cmd/internal/gofloor): the least a Go
// program does to move the mailbox into a Maildir durably.
const goFloorRow = "Go floor (Maildir system calls only: no UID store, DELE not waiting)"

// newTool returns the tool name; popfetch and base are popfetch binaries,
// and dir is the bench's work directory, for what a tool must build.
func newTool(name, popfetch, base, dir string) (tool, error) {
	switch name {
	case "base":
		// An earlier popfetch, run as the other tools are, for before
		// and after figures measured in one interleaved run.
		if base == "" {
			return tool{}, fmt.Errorf("-base names no binary")
		}
		t, err := newTool("popfetch", base, "", dir)
		t.name = "popfetch (base)"
		return t, err
	case "popfetch":
		return tool{name: name, version: firstLine(popfetch, "-V"), fetch: func(work, user, pass string, port int, keep bool) (measure.Result, error) {
			if err := prepare(work); err != nil {
				return measure.Result{}, err
			}
			conf := filepath.Join(work, "popfetch.toml")
			// auth = "user", as mpop's "auth user" and fetchmail's
			// "auth password": the private Dovecot offers SCRAM, which
			// auto would take, at two round trips more than USER/PASS.
			err := os.WriteFile(conf, []byte(fmt.Sprintf(`[[account]]
name = "bench"
server = "127.0.0.1"
port = %d
tls = "none"
allow_insecure_auth = true
auth = "user"
user = %q
password = %q
keep = %v
maildir = %q
`, port, user, pass, keep, filepath.Join(work, "Maildir"))), 0o600)
			if err != nil {
				return measure.Result{}, err
			}
			return runTool(work, nil, popfetch, "--config", conf, "--state-dir", filepath.Join(work, "state"), "-q")
		}}, nil
	case "gofloor":
		bin := filepath.Join(dir, "gofloor")
		// Static, as make build builds popfetch, so that the two binaries'
		// resident memory compares.
		build := exec.Command("go", "build", "-o", bin, "github.com/popfetch/popfetch/cmd/internal/gofloor")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return tool{}, fmt.Errorf("building gofloor: %v\n%s", err, out)
		}
		return tool{name: goFloorRow, version: "cmd/internal/gofloor", fetchOnly: true, fetch: func(work, user, pass string, port int, keep bool) (measure.Result, error) {
			if keep {
				return measure.Result{}, fmt.Errorf("gofloor cannot keep mail")
			}
			if err := prepare(work); err != nil {
				return measure.Result{}, err
			}
			return runTool(work, nil, bin, fmt.Sprintf("127.0.0.1:%d", port), user, pass, filepath.Join(work, "Maildir"))
		}}, nil
	case "mpop":
		path, err := exec.LookPath("mpop")
		if err != nil {
			return tool{}, err
		}
		return tool{name: name, version: firstLine(path, "--version"), fetch: func(work, user, pass string, port int, keep bool) (measure.Result, error) {
			if err := prepare(work); err != nil {
				return measure.Result{}, err
			}
			conf := filepath.Join(work, "mpoprc")
			keepWord := map[bool]string{true: "on", false: "off"}[keep]
			err := os.WriteFile(conf, []byte(fmt.Sprintf(`account bench
host 127.0.0.1
port %d
tls off
auth user
user %s
password %s
pipelining auto
delivery maildir %s
keep %s
only_new on
uidls_file %s
`, port, user, pass, filepath.Join(work, "Maildir"), keepWord, filepath.Join(work, "mpop-uidls"))), 0o600)
			if err != nil {
				return measure.Result{}, err
			}
			return runTool(work, nil, path, "-C", conf, "-q", "bench")
		}}, nil
	case "fetchmail":
		path, err := exec.LookPath("fetchmail")
		if err != nil {
			return tool{}, err
		}
		safecat, err := exec.LookPath("safecat")
		if err != nil {
			return tool{}, fmt.Errorf("fetchmail needs safecat to deliver into a Maildir: %w", err)
		}
		return tool{name: name, version: firstLine(path, "--version"), fetch: func(work, user, pass string, port int, keep bool) (measure.Result, error) {
			if err := prepare(work); err != nil {
				return measure.Result{}, err
			}
			conf := filepath.Join(work, "fetchmailrc")
			md := filepath.Join(work, "Maildir")
			keepWord := map[bool]string{true: "keep", false: "nokeep"}[keep]
			err := os.WriteFile(conf, []byte(fmt.Sprintf(`set no bouncemail
poll 127.0.0.1 service %d proto pop3 uidl auth password
  user "%s" there with password "%s" is root here
  sslproto '' %s
  mda "%s %s/tmp %s/new"
`, port, user, pass, keepWord, safecat, md, md)), 0o600)
			if err != nil {
				return measure.Result{}, err
			}
			// HOME: fetchmail keeps its pid lock and idfile there.
			return runTool(work, []string{"HOME=" + work}, path, "-f", conf, "--idfile", filepath.Join(work, "fetchids"), "-s", "--nosyslog")
		}}, nil
	}
	return tool{}, fmt.Errorf("unknown tool %q", name)
}

// prepare creates work and an empty Maildir in it, if missing.
func prepare(work string) error {
	for _, d := range []string{"Maildir/tmp", "Maildir/new", "Maildir/cur"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o700); err != nil {
			return err
		}
	}
	return nil
}

// firstLine runs a program for its version and returns the first line.
func firstLine(prog string, args ...string) string {
	out, _ := exec.Command(prog, args...).CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.Contains(l, "WARNING") {
			return l
		}
	}
	return "?"
}
