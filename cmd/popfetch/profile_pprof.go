//go:build pprof

package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
)

// startProfile writes a CPU profile to $POPFETCH_CPUPROFILE, and a profile
// of every allocation to $POPFETCH_MEMPROFILE ("%p" in either stands for
// the process ID, so that runs can be merged), until the returned
// function is called. It exists only in a binary built with -tags pprof,
// never in one that is installed.
func startProfile() func() {
	stopCPU := startCPUProfile(os.Getenv("POPFETCH_CPUPROFILE"))
	stopMem := startMemProfile(os.Getenv("POPFETCH_MEMPROFILE"))
	return func() {
		stopCPU()
		stopMem()
	}
}

func profilePath(path string) string {
	return strings.ReplaceAll(path, "%p", strconv.Itoa(os.Getpid()))
}

func startCPUProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(profilePath(path))
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

// startMemProfile samples an allocation every 256 octets on average (the
// default is every 512 KiB: too few for a run of a fraction of a second)
// and writes the "allocs" profile at the end: go tool pprof
// -sample_index=alloc_space shows what the run allocated, and where.
func startMemProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	runtime.MemProfileRate = 256
	return func() {
		// The profile is as of the last collection: one now makes it
		// count every allocation of the run.
		runtime.GC()
		f, err := os.Create(profilePath(path))
		if err != nil {
			fmt.Fprintln(os.Stderr, "popfetch: memory profile:", err)
			return
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			fmt.Fprintln(os.Stderr, "popfetch: memory profile:", err)
		}
	}
}
