package dovecot

import (
	"context"
	"errors"
	"os"
	"testing"
)

func TestStart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the private Dovecot test")
	}
	ctx := context.Background()
	s, err := Start(ctx)
	if errors.Is(err, ErrNotInstalled) || errors.Is(err, ErrNotRoot) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must run the Dovecot tests: %v", err)
		}
		t.Skipf("SKIPPING the private Dovecot test: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if err := s.AddUser("u1", "pw1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver("u1", []byte("Subject: a\n\nx\n"), []byte("Subject: b\n\ny\n")); err != nil {
		t.Fatal(err)
	}
	n, err := s.Index(ctx, "u1", "pw1")
	if err != nil || n != 2 {
		t.Fatalf("Index = %d, %v\n%s", n, err, s.LogTail())
	}
}
