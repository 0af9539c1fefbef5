//go:build !pprof

package main

// startProfile does nothing: CPU profiles are for binaries built with
// -tags pprof (see profile_pprof.go).
func startProfile() func() { return func() {} }
