package uidstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
)

// OpenError is a state file that cannot be used: it is damaged, is not a
// popfetch state file, or may not be read. Its message names the file
// and says what to do.
type OpenError struct {
	Path string
	// Damaged is true if the file's content is the problem (it is
	// truncated, overwritten, or not a bbolt database at all); false if
	// the file could not be read or written (permissions, a missing
	// directory, an I/O error).
	Damaged bool
	Err     error
}

func (e *OpenError) Error() string {
	if e.Damaged {
		return fmt.Sprintf("the UID state file %s cannot be used: %v. "+
			"Move it aside (mv %s %s.damaged) and run again: popfetch starts a new, empty one. "+
			"Accounts that delete mail from the server lose nothing; accounts with keep = true "+
			"fetch the mail still on the server again, unless you first restore their UIDs from an "+
			"export (popfetch uidl import ACCOUNT < FILE)", e.Path, e.Err, e.Path, e.Path)
	}
	if errors.Is(e.Err, fs.ErrPermission) {
		return fmt.Sprintf("the UID state file %s cannot be opened: %v. "+
			"It and its directory must belong to the user popfetch runs as, "+
			"and the file must be readable and writable (chmod 600)", e.Path, e.Err)
	}
	return fmt.Sprintf("the UID state file %s cannot be opened: %v", e.Path, e.Err)
}

func (e *OpenError) Unwrap() error { return e.Err }

// The parts of bbolt's file format that checkFile reads: every page has
// a 16-octet header (id, flags, count, overflow); pages 0 and 1 hold the
// meta record, the one with the higher transaction id being current.
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeaderSize   = 16
	metaSize         = 64 // magic..txid (56 octets), then the checksum
	metaChecksumEnd  = 56
	flagBranch       = 0x01
	flagLeaf         = 0x02
	flagFreelist     = 0x10
	noFreelist       = ^uint64(0)
	maxBoltPageShift = 14 // bbolt looks for the second meta page up to 1 KiB << 14
)

// meta is the part of a bbolt meta page that checkFile uses.
type meta struct {
	pageSize uint64
	root     uint64 // page of the root bucket
	freelist uint64 // page of the freelist, or noFreelist
	pgid     uint64 // high-water mark: pages in use
	txid     uint64
}

// checkFile looks at an existing database file before bbolt maps it:
// bbolt trusts its file, and on a truncated or overwritten one it panics
// or faults inside Open. A missing file is fine (Open creates it).
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &OpenError{Path: path, Err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return &OpenError{Path: path, Err: err}
	}
	damaged := func(format string, args ...any) error {
		return &OpenError{Path: path, Damaged: true, Err: fmt.Errorf(format, args...)}
	}
	size := fi.Size()
	if size == 0 {
		return damaged("the file is empty (it was truncated, or its creation was interrupted)")
	}
	m0, err0 := readMeta(f, 0)
	var m1 *meta
	err1 := err0
	if m0 != nil {
		m1, err1 = readMeta(f, int64(m0.pageSize))
	} else {
		// Without a valid first page, find the second at each page size
		// bbolt allows.
		for shift := 0; shift <= maxBoltPageShift && m1 == nil; shift++ {
			pos := int64(1024) << shift
			if pos >= size {
				break
			}
			m1, err1 = readMeta(f, pos)
		}
	}
	m := m0
	if m == nil || (m1 != nil && m1.txid > m0.txid) {
		m = m1
	}
	if m == nil {
		if errors.Is(err0, errNotBolt) && errors.Is(err1, errNotBolt) {
			return damaged("it is not a popfetch state file (not a bbolt database)")
		}
		if errors.Is(err0, errBoltVersion) || errors.Is(err1, errBoltVersion) {
			return damaged("it was written in a bbolt format this popfetch does not read")
		}
		return damaged("both of its header pages are damaged")
	}
	if need := m.pgid * m.pageSize; m.pgid > 1<<40 || uint64(size) < need {
		return damaged("it is truncated: %d octets, and its header says %d", size, need)
	}
	check := func(what string, pgid uint64, flags ...uint16) error {
		id, fl, _, _, err := pageHeader(f, pgid*m.pageSize)
		if err != nil {
			return damaged("its %s page cannot be read: %v", what, err)
		}
		if id != pgid {
			return damaged("its %s page (%d) is overwritten", what, pgid)
		}
		for _, want := range flags {
			if fl == want {
				return nil
			}
		}
		return damaged("its %s page (%d) is overwritten", what, pgid)
	}
	if m.root >= m.pgid || (m.freelist != noFreelist && m.freelist >= m.pgid) {
		return damaged("its header points past its end")
	}
	if err := check("root", m.root, flagBranch, flagLeaf); err != nil {
		return err
	}
	if m.freelist != noFreelist {
		if err := check("freelist", m.freelist, flagFreelist); err != nil {
			return err
		}
		if err := checkFreelist(f, m); err != nil {
			return damaged("%v", err)
		}
	}
	return nil
}

// checkFreelist checks that the freelist's length fits in its pages:
// bbolt allocates a slice of that length when it opens the file, and a
// damaged one would ask for terabytes.
func checkFreelist(r io.ReaderAt, m *meta) error {
	off := m.freelist * m.pageSize
	_, _, count, overflow, err := pageHeader(r, off)
	if err != nil {
		return err
	}
	n, skip := uint64(count), uint64(0)
	if count == 0xffff {
		// The real count is the first element.
		var b [8]byte
		if _, err := r.ReadAt(b[:], int64(off+pageHeaderSize)); err != nil {
			return fmt.Errorf("its freelist cannot be read: %w", err)
		}
		n, skip = binary.NativeEndian.Uint64(b[:]), 1
	}
	pages := uint64(overflow) + 1
	room := (pages*m.pageSize - pageHeaderSize) / 8
	if m.freelist+pages > m.pgid || n > room || n+skip > room {
		return fmt.Errorf("its freelist (page %d) is overwritten", m.freelist)
	}
	return nil
}

var (
	errNotBolt     = errors.New("not a bbolt database")
	errBoltVersion = errors.New("unknown bbolt version")
	errChecksum    = errors.New("bad checksum")
)

// readMeta reads and validates the meta page at off.
func readMeta(r io.ReaderAt, off int64) (*meta, error) {
	var b [pageHeaderSize + metaSize]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return nil, errNotBolt
	}
	p := b[pageHeaderSize:]
	le := binary.NativeEndian
	if le.Uint32(p[0:]) != boltMagic {
		return nil, errNotBolt
	}
	if le.Uint32(p[4:]) != boltVersion {
		return nil, errBoltVersion
	}
	h := fnv.New64a()
	h.Write(p[:metaChecksumEnd])
	if h.Sum64() != le.Uint64(p[metaChecksumEnd:]) {
		return nil, errChecksum
	}
	m := &meta{
		pageSize: uint64(le.Uint32(p[8:])),
		root:     le.Uint64(p[16:]),
		freelist: le.Uint64(p[32:]),
		pgid:     le.Uint64(p[40:]),
		txid:     le.Uint64(p[48:]),
	}
	if m.pageSize < 512 || m.pageSize > 1<<24 || m.pageSize&(m.pageSize-1) != 0 {
		return nil, errChecksum
	}
	return m, nil
}

// pageHeader reads the id, flags, count and overflow of the page at off.
func pageHeader(r io.ReaderAt, off uint64) (id uint64, flags, count uint16, overflow uint32, err error) {
	var b [pageHeaderSize]byte
	if _, err := r.ReadAt(b[:], int64(off)); err != nil {
		return 0, 0, 0, 0, err
	}
	le := binary.NativeEndian
	return le.Uint64(b[0:]), le.Uint16(b[8:]), le.Uint16(b[10:]), le.Uint32(b[12:]), nil
}

// guard runs fn, turning a panic, or a memory fault in bbolt's mapping of
// the file, into an *OpenError: bbolt panics on some damaged pages that
// checkFile's look at the header cannot see.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &OpenError{Path: path, Damaged: true, Err: fmt.Errorf("reading it failed: %v", r)}
		}
	}()
	return fn()
}

// CheckDir refuses the directory of the store file at path (the state
// directory) if another user could write in it: it belongs to another
// user (root aside), or its mode lets group or others write. Such a user
// could put a store of theirs in place of ours, saying that messages
// never delivered were, and popfetch would delete them from the server;
// or plant the files popfetch writes there (its lock, status and log)
// as links to the user's own files. A missing directory is no problem:
// it is made with mode 0700. The error is an *OpenError wrapping
// fs.ErrPermission.
func CheckDir(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &OpenError{Path: path, Err: err}
	}
	why := ""
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() && st.Uid != 0 {
		why = fmt.Sprintf("belongs to another user (uid %d)", st.Uid)
	} else if fi.Mode().Perm()&0o022 != 0 {
		why = fmt.Sprintf("can be written by group or others (mode %04o): chmod go-w %s", fi.Mode().Perm(), dir)
	}
	if why == "" {
		return nil
	}
	return &OpenError{Path: path, Err: &fs.PathError{Op: "the state directory", Path: dir,
		Err: fmt.Errorf("%s; another user could replace the UID state file in it: %w", why, fs.ErrPermission)}}
}
