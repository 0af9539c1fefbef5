package main

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// makeIn runs make in the repository's top directory with args, the
// built popfetch as the binary to install (make's build step is taken as
// done).
func makeIn(t *testing.T, args ...string) string {
	t.Helper()
	mk := requireTool(t, "make", "make")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args = append([]string{"-C", "../..", "-o", "build", "BIN=" + popfetchBinary(t)}, args...)
	out, err := exec.CommandContext(ctx, mk, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// filesUnder lists the regular files under dir, relative to it.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, filepath.ToSlash(rel))
		}
		return err
	})
	slices.Sort(out)
	return out
}

// TestMakeInstall: make install DESTDIR=... PREFIX=/usr puts the binary,
// the manual page, the three completions and the systemd user units
// where the tools look for them, with ExecStart naming the installed
// binary; man, zsh, fish and bash find them there; make uninstall takes
// every file away again. DESTDIR holds a space, as a user's may.
func TestMakeInstall(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "dest dir")
	makeIn(t, "install", "DESTDIR="+dest, "PREFIX=/usr")
	want := []string{
		"usr/bin/popfetch",
		"usr/lib/systemd/user/popfetch-oneshot.service",
		"usr/lib/systemd/user/popfetch.service",
		"usr/lib/systemd/user/popfetch.timer",
		"usr/share/bash-completion/completions/popfetch",
		"usr/share/fish/vendor_completions.d/popfetch.fish",
		"usr/share/man/man1/popfetch.1",
		"usr/share/zsh/site-functions/_popfetch",
	}
	if got := filesUnder(t, dest); !slices.Equal(got, want) {
		t.Fatalf("make install put\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	usr := filepath.Join(dest, "usr")
	for _, f := range want {
		st, err := os.Stat(filepath.Join(dest, f))
		if err != nil {
			t.Fatal(err)
		}
		mode := fs.FileMode(0o644)
		if f == "usr/bin/popfetch" {
			mode = 0o755
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", f, st.Mode().Perm(), mode)
		}
	}
	for _, u := range []string{"popfetch.service", "popfetch-oneshot.service"} {
		data, _ := os.ReadFile(filepath.Join(usr, "lib/systemd/user", u))
		if !strings.Contains(string(data), "\nExecStart=/usr/bin/popfetch ") || strings.Contains(string(data), "/usr/local") {
			t.Errorf("%s does not start /usr/bin/popfetch:\n%s", u, data)
		}
	}
	page, _ := os.ReadFile(filepath.Join(usr, "share/man/man1/popfetch.1"))
	if string(page) != runBinary(t, "man") {
		t.Error("the installed manual page is not what the binary prints")
	}

	bin := filepath.Join(usr, "bin")
	env := append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "MANPAGER=cat", "PAGER=cat", "MANWIDTH=80",
		"LANG=C.UTF-8", "XDG_DATA_DIRS="+filepath.Join(usr, "share"))
	run := func(name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run(filepath.Join(bin, "popfetch"), "--version"); !strings.HasPrefix(out, "popfetch ") {
		t.Errorf("the installed popfetch --version says %q", out)
	}

	// man finds the page by name under the installed tree.
	man := requireTool(t, "man", "man-db")
	if out := run(man, "-M", filepath.Join(usr, "share/man"), "popfetch"); !strings.Contains(out, "EXIT STATUS") ||
		!strings.Contains(out, "POPFETCH(1)") {
		t.Errorf("man -M ... popfetch renders:\n%s", out)
	}

	// zsh finds _popfetch on its fpath; fish in the vendor directory of
	// XDG_DATA_DIRS; bash-completion in completions/ of XDG_DATA_DIRS.
	zsh := requireShell(t, "zsh")
	if out := run(zsh, "-f", "-c", "fpath=("+shellQuote([]string{filepath.Join(usr, "share/zsh/site-functions")})+
		" $fpath); autoload -Uz compinit && compinit -u -D && echo found:${_comps[popfetch]}"); !strings.Contains(out, "found:_popfetch") {
		t.Errorf("zsh does not find the installed completion:\n%s", out)
	}
	fish := requireShell(t, "fish")
	if out := run(fish, "-c", "complete -C 'popfetch comp'"); !strings.Contains(out, "completion") {
		t.Errorf("fish does not find the installed completion: %q", out)
	}
	loader := "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(loader); err == nil {
		script := "source " + loader + "\n_completion_loader popfetch\nCOMP_WORDS=(popfetch comp)\nCOMP_CWORD=1\n" +
			"_popfetch\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		if out := run("bash", "-c", script); !strings.Contains(out, "completion") {
			t.Errorf("bash-completion does not load the installed completion:\n%s", out)
		}
	} else if os.Getenv("CI") == "true" {
		t.Errorf("CI must check the bash completion's place: %s is missing (apt-get install bash-completion)", loader)
	} else {
		t.Logf("SKIPPING the bash-completion check: %s is missing (apt-get install bash-completion)", loader)
	}

	makeIn(t, "uninstall", "DESTDIR="+dest, "PREFIX=/usr")
	if left := filesUnder(t, dest); len(left) > 0 {
		t.Errorf("make uninstall left %v", left)
	}
}

// TestMakeInstallPrefixWithSpace: make splits its lists at whitespace, so
// make install and uninstall refuse a PREFIX with a space rather than
// create or remove other paths: uninstall with PREFIX "DIR/my apps" used
// to remove the file DIR/my, which it had not installed.
func TestMakeInstallPrefixWithSpace(t *testing.T) {
	mk := requireTool(t, "make", "make")
	dir := t.TempDir()
	other := filepath.Join(dir, "my")
	if err := os.WriteFile(other, []byte("not popfetch's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"uninstall", "install"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		args := []string{"-C", "../..", "-o", "build", "BIN=" + popfetchBinary(t), target,
			"DESTDIR=" + dir, "PREFIX=/my apps"}
		out, err := exec.CommandContext(ctx, mk, args...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), "whitespace") {
			t.Errorf("make %s PREFIX=\"/my apps\": %v\n%s", target, err, out)
		}
		if _, err := os.Stat(other); err != nil {
			t.Fatalf("make %s PREFIX=\"/my apps\" removed %s, which it did not install\n%s", target, other, out)
		}
	}
	if got := filesUnder(t, dir); !slices.Equal(got, []string{"my"}) {
		t.Errorf("make install PREFIX=\"/my apps\" made %v", got)
	}
	if _, err := os.Stat(dir + "apps"); err == nil {
		t.Errorf("make install PREFIX=\"/my apps\" made %s", dir+"apps")
		os.RemoveAll(dir + "apps")
	}
}

// TestMakeInstallUnits: installed with PREFIX alone, the systemd units
// name a binary that exists, and systemd-analyze (where installed)
// verifies them as user units.
func TestMakeInstallUnits(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "prefix")
	makeIn(t, "install", "PREFIX="+prefix)
	t.Cleanup(func() { makeIn(t, "uninstall", "PREFIX="+prefix) })
	units := filepath.Join(prefix, "lib/systemd/user")
	data, _ := os.ReadFile(filepath.Join(units, "popfetch.service"))
	if !strings.Contains(string(data), "\nExecStart="+prefix+"/bin/popfetch daemon\n") {
		t.Errorf("popfetch.service does not start %s/bin/popfetch:\n%s", prefix, data)
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("SKIPPING the unit check: systemd-analyze is not installed")
	}
	runtime := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, analyze, "verify", "--user", filepath.Join(units, "popfetch.service"),
		filepath.Join(units, "popfetch-oneshot.service"), filepath.Join(units, "popfetch.timer"))
	// It runs man for Documentation=man:popfetch(1): the page must be found.
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runtime, "MANPATH="+filepath.Join(prefix, "share/man"))
	cmd.Dir = runtime
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify --user: %v\n%s", err, out)
	}
}
