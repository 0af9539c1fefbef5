package main

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

// TestNoCoreDumps: the popfetch binary runs with a core file size limit
// of zero (which its children inherit: an MDA, a password_command) and,
// on Linux, not dumpable. The daemon is started and its /proc entries
// read; a password_command it runs reports its own limit.
func TestNoCoreDumps(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary")
	}
	bin := popfetchBinary(t)
	f := newCLIFixture(t, pop3test.Config{}, 0, "")
	limitFile := f.dir + "/child-limit"
	f.writeConfig(strings.Replace(pop3testAccount("test", f.srv.Addr(), f.maildir, "timeout = \"5s\"\n"),
		`password = "wonderland"`, `password_command = ["sh", "-c", "ulimit -c > `+limitFile+`; echo wonderland"]`, 1), 0o600)
	cmd := exec.Command(bin, "--config", f.config, "--state-dir", f.stateDir, "daemon")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if data, err := os.ReadFile(limitFile); err == nil && len(data) > 0 {
			if got := strings.TrimSpace(string(data)); got != "0" {
				t.Errorf("a password_command runs with a core limit of %q", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the password_command did not run:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	limits, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/limits")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(limits), "\n") {
		if strings.HasPrefix(line, "Max core file size") {
			if f := strings.Fields(line); len(f) < 6 || f[4] != "0" || f[5] != "0" {
				t.Errorf("the daemon's core limit: %q", line)
			}
		}
	}
}

// TestHardenNotDumpable runs harden in a child process (it cannot be
// undone) and reads back what it set.
func TestHardenNotDumpable(t *testing.T) {
	if os.Getenv("POPFETCH_TEST_HARDEN") == "1" {
		if err := harden(); err != nil {
			os.Stdout.WriteString("error " + err.Error())
			os.Exit(0)
		}
		var lim unix.Rlimit
		unix.Getrlimit(unix.RLIMIT_CORE, &lim)
		dumpable := -1
		if runtime.GOOS == "linux" {
			dumpable, _ = unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
		}
		os.Stdout.WriteString(strconv.FormatUint(uint64(lim.Cur), 10) + " " + strconv.FormatUint(uint64(lim.Max), 10) + " " + strconv.Itoa(dumpable))
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHardenNotDumpable$")
	cmd.Env = append(os.Environ(), "POPFETCH_TEST_HARDEN=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "0 0 0"
	if runtime.GOOS != "linux" {
		want = "0 0 -1"
	}
	if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, want) {
		t.Errorf("after harden: %q, want core limits 0 0 and not dumpable (%q)", got, want)
	}
}
