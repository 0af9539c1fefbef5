package uidstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// damagedFile writes a store of n UIDs, closes it, and returns its path
// and content.
func damagedFile(t *testing.T, n int) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "uids.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	k := Key{"h", 995, "u"}
	for i := 0; i < n; i += 1000 {
		var uids []string
		for j := i; j < min(n, i+1000); j++ {
			uids = append(uids, fmt.Sprintf("uid-%06d-%s", j, strings.Repeat("x", 40)))
		}
		if err := s.Record(k, uids...); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data
}

// setMetaVersion rewrites the version of both meta pages, with a valid
// checksum, as a file written by another bbolt format would have it.
func setMetaVersion(data []byte, pageSize int, v uint32) {
	for _, off := range []int{0, pageSize} {
		m := data[off+pageHeaderSize:]
		binary.NativeEndian.PutUint32(m[4:], v)
		h := fnv.New64a()
		h.Write(m[:metaChecksumEnd])
		binary.NativeEndian.PutUint64(m[metaChecksumEnd:], h.Sum64())
	}
}

func TestOpenDamaged(t *testing.T) {
	const pageSize = 4096
	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + 3)
		}
		return b
	}
	tests := []struct {
		name   string
		damage func(data []byte) []byte
		// openOK: the damage is one Open survives (bbolt keeps two
		// meta pages), or that only a transaction can find.
		openOK bool
	}{
		{"empty", func([]byte) []byte { return nil }, false},
		{"100 octets", func(d []byte) []byte { return d[:100] }, false},
		{"a text file", func([]byte) []byte { return []byte("uid-1\nuid-2\n") }, false},
		{"garbage", func(d []byte) []byte { return garbage(len(d)) }, false},
		{"truncated to the meta pages", func(d []byte) []byte { return d[:2*pageSize] }, false},
		{"truncated by half", func(d []byte) []byte { return d[:len(d)/2] }, false},
		{"both meta pages overwritten", func(d []byte) []byte { copy(d, garbage(2*pageSize)); return d }, false},
		{"first meta page overwritten", func(d []byte) []byte { copy(d, garbage(pageSize)); return d }, true},
		{"another bbolt version", func(d []byte) []byte { setMetaVersion(d, pageSize, 1); return d }, false},
		{"pages after the meta overwritten", func(d []byte) []byte {
			copy(d[2*pageSize:], garbage(len(d)-2*pageSize))
			return d
		}, false},
		{"a sqlite file", func(d []byte) []byte {
			return append([]byte("SQLite format 3\x00"), garbage(8192)...)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, data := damagedFile(t, 20000)
			if err := os.WriteFile(path, tt.damage(data), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, time.Second)
			if !tt.openOK {
				var oe *OpenError
				if !errors.As(err, &oe) || !oe.Damaged {
					if s != nil {
						s.Close()
					}
					t.Fatalf("Open = %v, want a damaged-file error", err)
				}
				msg := err.Error()
				if !strings.Contains(msg, path) || !strings.Contains(msg, "mv "+path) {
					t.Errorf("the error does not name the file and what to do: %s", msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open = %v", err)
			}
			defer s.Close()
			if _, err := s.Seen(Key{"h", 995, "u"}, []string{"uid-000005-" + strings.Repeat("x", 40)}); err != nil {
				t.Fatalf("Seen = %v", err)
			}
		})
	}
}

// TestDamagedLeafPages: damage that only a transaction reaches (leaf
// pages overwritten, the header intact) is an error, never a panic.
func TestDamagedLeafPages(t *testing.T) {
	path, data := damagedFile(t, 20000)
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Find the root page: overwrite every page but it, the meta pages
	// and the freelist, keeping each page's id and flags so the header
	// check passes.
	m, err := readMeta(bytes.NewReader(data), 0)
	if err != nil {
		t.Fatal(err)
	}
	if m1, _ := readMeta(bytes.NewReader(data), int64(m.pageSize)); m1 != nil && m1.txid > m.txid {
		m = m1
	}
	s.Close()
	ps := int(m.pageSize)
	for pg := 2; pg < int(m.pgid); pg++ {
		if uint64(pg) == m.root || uint64(pg) == m.freelist {
			continue
		}
		page := data[pg*ps : (pg+1)*ps]
		for i := pageHeaderSize; i < len(page); i++ {
			page[i] = byte(i*13 + pg)
		}
		binary.NativeEndian.PutUint16(page[10:], 0xffff) // count: far past the page
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, time.Second)
	if err != nil {
		var oe *OpenError
		if !errors.As(err, &oe) || !oe.Damaged {
			t.Fatalf("Open = %v", err)
		}
		return
	}
	defer s.Close()
	k := Key{"h", 995, "u"}
	_, errSeen := s.Seen(k, []string{"uid-019999-" + strings.Repeat("x", 40)})
	_, errCount := s.Count(k)
	errEach := s.Each(k, func(string, time.Time) error { return nil })
	for _, err := range []error{errSeen, errCount, errEach} {
		var oe *OpenError
		if err != nil && !errors.As(err, &oe) {
			t.Errorf("got %v, want an *OpenError or nothing", err)
		}
	}
	if errSeen == nil && errCount == nil && errEach == nil {
		t.Error("no read noticed the damage")
	}
	// The store still closes, and a writer still gets in (or an error).
	if err := s.Record(k, "new"); err != nil {
		t.Logf("Record after damage: %v", err)
	}
}

func TestOpenNotADirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	_, err := Open(filepath.Join(file, "uids.db"), time.Second)
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Damaged {
		t.Fatalf("Open = %v, want an *OpenError that is not Damaged", err)
	}
}

// TestOpenDamagedFreelist: a freelist whose length runs past the file
// (bbolt would allocate it: a fatal out-of-memory, not a panic), or whose
// entries are nonsense, is damage, reported as such every time, never a
// crash, and never as a lock left held by the first attempt.
func TestOpenDamagedFreelist(t *testing.T) {
	tests := []struct {
		name  string
		count uint16
		ids   []uint64
	}{
		{"length past the file", 0xffff, []uint64{1 << 40}},
		{"the meta pages listed free, twice", 4, []uint64{1, 1, 0, 0}},
		{"pages past the end listed free", 3, []uint64{1 << 50, 1<<50 + 1, 1<<50 + 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, data := damagedFile(t, 20000)
			m, err := readMeta(bytes.NewReader(data), 0)
			if err != nil {
				t.Fatal(err)
			}
			if m1, _ := readMeta(bytes.NewReader(data), int64(m.pageSize)); m1 != nil && m1.txid > m.txid {
				m = m1
			}
			if m.freelist == noFreelist {
				t.Fatal("the store has no freelist page")
			}
			page := data[m.freelist*m.pageSize:]
			binary.NativeEndian.PutUint16(page[10:], tt.count)
			for i, id := range tt.ids {
				binary.NativeEndian.PutUint64(page[pageHeaderSize+8*i:], id)
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				s, err := Open(path, 100*time.Millisecond)
				if err == nil {
					// bbolt took it: then reading and writing must
					// not crash either.
					k := Key{"h", 995, "u"}
					s.Seen(k, []string{"x"})
					s.Record(k, "x")
					s.Close()
					continue
				}
				var oe *OpenError
				if !errors.As(err, &oe) || !oe.Damaged {
					t.Fatalf("attempt %d: %v, want a damaged-file error", i+1, err)
				}
				t.Logf("attempt %d: %v", i+1, oe.Err)
			}
		})
	}
}
