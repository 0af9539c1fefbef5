package main

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"time"
)

// runBin runs the built popfetch binary with the fixture's config and
// state directory and returns its exit code, stdout and stderr.
func (f *cliFixture) runBin(args ...string) (int, string, string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"--config", f.config, "--state-dir", f.stateDir}, args...)
	cmd := exec.CommandContext(ctx, popfetchBinary(f.t), full...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		f.t.Fatalf("popfetch %s: %v", strings.Join(args, " "), err)
	}
	return code, stdout.String(), stderr.String()
}
