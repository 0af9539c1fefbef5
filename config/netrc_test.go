package config

import (
	"bufio"
	"strings"
	"testing"
)

func FuzzNetrc(f *testing.F) {
	for _, seed := range []string{
		"machine a login b password c\n", "default password d", "machine \"q u\" password \"x\\\"y\"",
		"macdef m\nmachine evil password e\n\nmachine ok password f\n", "# c\nmachine", "password", "\"", "machine m password #x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		entries, err := parseNetrc(bufio.NewReader(strings.NewReader(in)))
		if err != nil {
			return
		}
		if len(entries) > len(in) {
			t.Fatalf("%d entries from %d octets", len(entries), len(in))
		}
		for _, e := range entries {
			if strings.ContainsAny(e.machine+e.login+e.password, "\n") {
				t.Fatalf("entry spans lines: %+v", e)
			}
		}
	})
}
