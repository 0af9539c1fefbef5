package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/cmd/internal/dovecot"
)

// TestVerify: the bench's check of a run accepts each message delivered
// once and whole, with header fields added, and refuses a message
// missing, twice, or with its body cut or changed.
func TestVerify(t *testing.T) {
	var msgs []string
	ids := map[string]bodySum{}
	for _, id := range []string{"a@x", "b@x"} {
		h := newBodyHasher()
		var b strings.Builder
		if _, err := io.Copy(&b, io.TeeReader(dovecot.Message(id, "s", 5000), h)); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, b.String())
		ids["<"+id+">"] = h.sum()
	}
	received := "Received: from pop.example by host with POP3; Mon, 30 Nov 2026 10:00:00 +0000\n"
	tests := []struct {
		name  string
		files []string
		ok    bool
	}{
		{"whole", []string{msgs[0], msgs[1]}, true},
		{"with a header field added", []string{received + msgs[0], msgs[1]}, true},
		{"one missing", []string{msgs[0]}, false},
		{"one twice", []string{msgs[0], msgs[1], msgs[1]}, false},
		{"body cut", []string{msgs[0], msgs[1][:len(msgs[1])-100]}, false},
		{"a line ending changed", []string{msgs[0], strings.Replace(msgs[1], "dog.", "dog.\r", 1)}, false},
		{"an extra line at the end", []string{msgs[0], msgs[1] + "\n"}, false},
		{"no Message-ID", []string{msgs[0], msgs[1], "Subject: x\n\nbody\n"}, false},
	}
	for _, tt := range tests {
		md := t.TempDir()
		for _, d := range []string{"new", "cur"} {
			if err := os.Mkdir(filepath.Join(md, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		for i, f := range tt.files {
			if err := os.WriteFile(filepath.Join(md, "new", string(rune('a'+i))), []byte(f), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		err := verify(md, ids)
		if (err == nil) != tt.ok {
			t.Errorf("%s: verify: %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}
