package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/schedule"
)

// encodeStatus writes what json.Marshal would, an account a line.
func TestEncodeStatus(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	st := statusFile{PID: 42, Started: now, Updated: now, Config: "c.toml", Goroutines: 3, Memory: 1 << 20}
	for _, n := range []int{0, 1, 2000} {
		st.Accounts = make([]schedule.JobStatus, n)
		for i := range st.Accounts {
			st.Accounts[i] = schedule.JobStatus{Name: strings.Repeat("x", i%7), LastEnd: now, LastResult: "ok", LastError: "a \"quoted\"\nerror", Polls: i}
		}
		var b bytes.Buffer
		if err := encodeStatus(&b, st); err != nil {
			t.Fatal(err)
		}
		var got statusFile
		if err := json.Unmarshal(b.Bytes(), &got); err != nil {
			t.Fatalf("%d accounts: %v\n%.300s", n, err, b.String())
		}
		if !reflect.DeepEqual(got, st) {
			t.Errorf("%d accounts: decoded %+v, want %+v", n, got, st)
		}
		if lines := strings.Count(b.String(), "\n"); lines != n+2 && !(n == 0 && lines == 1) {
			t.Errorf("%d accounts: %d lines", n, lines)
		}
	}
}
