package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runBinary runs the built popfetch and returns its standard output.
func runBinary(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, popfetchBinary(t), args...).Output()
	if err != nil {
		t.Fatalf("popfetch %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// TestGeneratedDocs: the manual page and the completion scripts in docs/
// are what the command-line definition makes of them (make docs), so
// they cannot drift; the manual page names every command (TestManPage
// reads it closely).
func TestGeneratedDocs(t *testing.T) {
	for _, g := range []struct {
		file string
		args []string
	}{
		{"../../docs/popfetch.1", []string{"man"}},
		{"../../docs/completion/popfetch.bash", []string{"completion", "bash"}},
		{"../../docs/completion/_popfetch", []string{"completion", "zsh"}},
		{"../../docs/completion/popfetch.fish", []string{"completion", "fish"}},
	} {
		want := runBinary(t, g.args...)
		got, err := os.ReadFile(g.file)
		if err != nil || string(got) != want {
			t.Errorf("%s is out of date (run make docs): %v", g.file, err)
		}
	}
	man := runBinary(t, "man")
	for _, cmd := range []string{"fetch", "check", "daemon", "status", "auth", "uidl", "config", "list", "import", "completion"} {
		if !strings.Contains(man, "\n.SS "+strconv.Quote(cmd)+"\n") {
			t.Errorf("the manual page lacks the command %s", cmd)
		}
	}
	if strings.Contains(man, "\n.SS \"man\"") {
		t.Error("the manual page lists the hidden man command")
	}
}

// requireShell finds a shell for a completion test: skipped loudly, and
// only outside CI, when it is missing.
func requireShell(t *testing.T, name string) string {
	t.Helper()
	return requireTool(t, name, name)
}

// completionEnv is a config with two accounts and a PATH that finds the
// built popfetch.
func completionEnv(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(pop3testAccount("work", "127.0.0.1:1", filepath.Join(dir, "m"), "")+
		pop3testAccount("home", "127.0.0.1:1", filepath.Join(dir, "m"), "")), 0o600)
	return append(os.Environ(), "POPFETCH_CONFIG="+cfg, "PATH="+filepath.Dir(popfetchBinary(t))+":"+os.Getenv("PATH"))
}

func TestCompletion(t *testing.T) {
	cases := []struct {
		words string // what was typed, the last word being completed
		want  []string
		not   []string
	}{
		{"popfetch ", []string{"fetch", "daemon", "import", "completion", "work", "home"}, []string{"man"}},
		{"popfetch li", []string{"list"}, []string{"fetch"}},
		{"popfetch list ", []string{"work", "home"}, []string{"fetch"}},
		{"popfetch daemon w", []string{"work"}, []string{"home"}},
		{"popfetch fetch --ke", []string{"--keep"}, nil},
		// After a flag typed in full, the next word is a command or an
		// account, not more flags that start like it.
		{"popfetch -k ", []string{"fetch", "daemon", "work", "home"}, []string{"--keep"}},
		{"popfetch -v w", []string{"work"}, []string{"--verbose", "--version"}},
		{"popfetch --syslog ", []string{"fetch", "work"}, []string{"--syslog"}},
		{"popfetch list --headers ", []string{"work", "home"}, []string{"--headers"}},
		{"popfetch check -q ", []string{"work", "home"}, []string{"--quiet"}},
		{"popfetch list --", []string{"--headers", "--config"}, nil},
		{"popfetch completion ", []string{"bash", "zsh", "fish"}, nil},
		{"popfetch completion bash ", nil, []string{"bash", "zsh", "work"}},
		{"popfetch work ", []string{"home"}, []string{"work"}},
		{"popfetch auth ", []string{"work", "home"}, []string{"fetch"}},
		{"popfetch list work ", nil, []string{"home", "work"}},
		{"popfetch uidl ", []string{"export", "import", "forget"}, []string{"work", "fetch"}},
		{"popfetch uidl ex", []string{"export"}, []string{"import"}},
		{"popfetch uidl export ", []string{"work", "home"}, []string{"export"}},
		{"popfetch uidl forget work ", nil, []string{"work", "home", "forget"}},
		{"popfetch uidl forget --a", []string{"--all"}, nil},
		{"popfetch import ", []string{"fetchmail", "mpop", "getmail"}, []string{"work", "fetch"}},
		{"popfetch import fetchmail ", []string{filesHere}, []string{"work", "fetchmail"}},
		{"popfetch import --uids mpop ", []string{filesHere}, []string{"work", "mpop"}},
		{"popfetch config ", []string{"check"}, []string{"work"}},
		{"popfetch config check ", []string{"work", "home"}, []string{"check"}},
		{"popfetch config check work ", []string{"home"}, []string{"work"}},
		{"popfetch --log-format ", []string{"auto", "human", "text", "json"}, []string{"work"}},
		{"popfetch daemon --log-format j", []string{"json"}, []string{"text"}},
		{"popfetch --config ", []string{filesHere}, []string{"work", "--keep"}},
		{"popfetch import -o ", []string{filesHere}, []string{"work"}},
		{"popfetch fetch -- ", []string{filesHere}, []string{"work"}},
	}
	// A state directory of its own: a completion that ran a command
	// would write there, not in the user's.
	env := append(completionEnv(t), "POPFETCH_STATE_DIR="+t.TempDir())
	// urfave/cli panics on a partial flag with its completion flag: popfetch
	// must answer nothing, not crash.
	cmd := exec.Command(popfetchBinary(t), "fetch", "--ke", "--generate-bash-completion")
	if out, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(out), "panic") {
		t.Errorf("completion of a partial flag: %v\n%s", err, out)
	}
	// After "--" urfave/cli takes the completion flag for an argument and
	// would run the command; a completion after a flag that wants a
	// value would be a usage error. Either way: nothing run, nothing
	// printed, exit 0.
	for _, args := range [][]string{
		{"daemon", "--"}, {"--", "work"}, {"fetch", "work", "--"}, {"uidl", "forget", "work", "--"},
		{"fetch", "--config"}, {"--state-dir"}, {"import", "--output"},
	} {
		cmd := exec.Command(popfetchBinary(t), append(args, "--generate-bash-completion")...)
		cmd.Env = env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || len(out) > 0 || stderr.Len() > 0 {
			t.Errorf("popfetch %s --generate-bash-completion: %v, printed %q, %q", strings.Join(args, " "), err, out, stderr.String())
		}
	}
	check := func(t *testing.T, shell, words string, out string, want, not []string) {
		got := strings.Fields(out)
		for _, w := range want {
			if w == filesHere && shell == "bash" {
				// Nothing: bash's "complete -o default" completes file names.
				if len(got) > 0 {
					t.Errorf("bash: %q completes to %q, want nothing (file names)", words, got)
				}
				continue
			}
			if !contains(got, w) {
				t.Errorf("%s: %q completes to %q, want %s among them", shell, words, got, w)
			}
		}
		for _, w := range not {
			if contains(got, w) {
				t.Errorf("%s: %q completes to %q, which should not hold %s", shell, words, got, w)
			}
		}
	}
	t.Run("bash", func(t *testing.T) {
		bash := requireShell(t, "bash")
		for _, c := range cases {
			words := strings.Fields(c.words)
			if strings.HasSuffix(c.words, " ") {
				words = append(words, "")
			}
			script := "source ../../docs/completion/popfetch.bash\nCOMP_WORDS=(" + shellQuote(words) + ")\nCOMP_CWORD=" +
				strconv.Itoa(len(words)-1) + "\n_popfetch\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
			cmd := exec.Command(bash, "-c", script)
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			check(t, "bash", c.words, string(out), c.want, c.not)
		}
	})
	t.Run("fish", func(t *testing.T) {
		fish := requireShell(t, "fish")
		for _, c := range cases {
			cmd := exec.Command(fish, "--no-config", "-c", "source ../../docs/completion/popfetch.fish; complete -C '"+c.words+"'")
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("fish: %v\n%s", err, out)
			}
			var first []string
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Fields(line); len(f) > 0 {
					first = append(first, f[0])
				}
			}
			check(t, "fish", c.words, strings.Join(first, " "), c.want, c.not)
		}
	})
	t.Run("zsh", func(t *testing.T) {
		zsh := requireShell(t, "zsh")
		// The completion function, with zsh's _describe and _files
		// standing in: what it offers for the words typed.
		for _, c := range cases {
			words := strings.Fields(c.words)
			if strings.HasSuffix(c.words, " ") {
				words = append(words, "")
			}
			script := "compdef() { :; }\n_describe() { print -rl -- ${(P)2} }\n_files() { print -r -- " + filesHere + " }\n" +
				"source ../../docs/completion/_popfetch\nwords=(" + shellQuote(words) + ")\nCURRENT=" + strconv.Itoa(len(words)) +
				"\n_popfetch\n"
			cmd := exec.Command(zsh, "-f", "-c", script)
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("zsh: %v\n%s", err, out)
			}
			// _describe filters by the word typed; the stand-in does not.
			prefix := words[len(words)-1]
			var got []string
			for _, w := range strings.Fields(string(out)) {
				if strings.HasPrefix(w, prefix) || w == filesHere {
					got = append(got, w)
				}
			}
			check(t, "zsh", c.words, strings.Join(got, " "), c.want, c.not)
		}
		// The script loads into zsh's completion system without error.
		cmd := exec.Command(zsh, "-f", "-c", "autoload -Uz compinit && compinit -u -D && source ../../docs/completion/_popfetch && echo loaded:${_comps[popfetch]}")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "loaded:_popfetch") {
			t.Fatalf("zsh: %v\n%s", err, out)
		}
	})
}

// filesHere in a completion case's want stands for file names: bash
// offers nothing (its "-o default" then completes file names), fish and
// zsh file names (main.go is in the test's directory).
const filesHere = "main.go"

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func shellQuote(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
