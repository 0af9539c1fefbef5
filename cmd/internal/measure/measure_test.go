package measure

import (
	"os/exec"
	"testing"
)

func TestRun(t *testing.T) {
	// sh allocating ~40 MB in a variable, then exiting 3.
	res, err := Run(exec.Command("sh", "-c", `x=$(head -c 40000000 /dev/zero | tr '\0' a); sleep 0.1; exit 3`))
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 {
		t.Errorf("exit %d", res.ExitCode)
	}
	if res.PeakRSS < 30<<20 || res.Wall <= 0 {
		t.Errorf("peak RSS %d, wall %v", res.PeakRSS, res.Wall)
	}
	if _, err := Run(exec.Command("/nonexistent/program")); err == nil {
		t.Error("no error for a missing program")
	}
}
