package deliver

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestFindDelivered covers every place a message of a pending delivery
// can be after a crash.
func TestFindDelivered(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Mail")
	md, err := NewMaildir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	publish := func() string {
		st, err := md.Stage(context.Background(), strings.NewReader("Subject: x\n\nbody\n"), Envelope{})
		if err != nil {
			t.Fatal(err)
		}
		name := st.(Named).Name()
		if err := st.Publish(context.Background()); err != nil {
			t.Fatal(err)
		}
		return name
	}
	write := func(path string) {
		if err := os.WriteFile(filepath.Join(dir, path), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	inNew := publish()
	read, flagged, semicolon := publish(), publish(), publish()
	for name, flags := range map[string]string{read: ":2,S", flagged: ":2,FRS", semicolon: ";2,S"} {
		if err := os.Rename(filepath.Join(dir, "new", name), filepath.Join(dir, "cur", name+flags)); err != nil {
			t.Fatal(err)
		}
	}
	inCurNoFlags := publish()
	os.Rename(filepath.Join(dir, "new", inCurNoFlags), filepath.Join(dir, "cur", inCurNoFlags))
	onlyTmp := "100.M1P2Q3R4.host"
	write("tmp/" + onlyTmp)
	bothTmpAndNew := "100.M1P2Q4R4.host"
	write("tmp/" + bothTmpAndNew)
	write("new/" + bothTmpAndNew)
	nowhere := "100.M1P2Q5R4.host"
	prefixOnly := "100.M1P2Q6R4.host"
	write("cur/" + prefixOnly + "7:2,S") // another message whose name starts alike

	names := []string{inNew, read, flagged, semicolon, inCurNoFlags, onlyTmp, bothTmpAndNew, nowhere, prefixOnly}
	got, err := FindDelivered(dir, names)
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, true, true, true, true, false, true, false, false}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("FindDelivered = %v, want %v", got, want)
	}
	if tmp := listDir(t, filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Errorf("leftover files in tmp/: %v", tmp)
	}

	// A Maildir that was deleted holds nothing.
	os.RemoveAll(dir)
	got, err = FindDelivered(dir, names[:2])
	if err != nil || !reflect.DeepEqual(got, []bool{false, false}) {
		t.Errorf("deleted Maildir: %v, %v", got, err)
	}
	for _, bad := range []string{"", "../x", "a/b"} {
		if _, err := FindDelivered(dir, []string{bad}); err == nil {
			t.Errorf("FindDelivered(%q) succeeded", bad)
		}
	}
}
