//go:build pprof

package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
)

// startProfile writes a CPU profile to $POPFETCH_CPUPROFILE ("%p" in it
// stands for the process ID, so that runs can be merged) until the
// returned function is called. It exists only in a binary built with
// -tags pprof (make profile), never in one that is installed.
func startProfile() func() {
	path := os.Getenv("POPFETCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(strings.ReplaceAll(path, "%p", strconv.Itoa(os.Getpid())))
	if err != nil {
		fmt.Fprintln(os.Stderr, "popfetch: cpu profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "popfetch: cpu profile:", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
