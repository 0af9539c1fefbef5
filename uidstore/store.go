// Package uidstore remembers which messages of which mailbox have been
// delivered, by their POP3 unique id (UIDL), in a bbolt database.
//
// Each mailbox has its own bucket, named by its Key (server, port, user).
// A UID is recorded only after its message is safely delivered; a poll asks
// which of the server's UIDs are already known in one read transaction.
//
// A delivery is also recorded before the message becomes visible, as
// Pending (for a Maildir, with the file name it will have; for a remote
// mailbox, with what finds the message there), so that after a crash the
// next poll can tell whether the message arrived (see Pending).
//
// The database file is locked by the process that opens it: a second
// process waits up to a timeout and then gets an error that matches
// ErrLocked. A file that is damaged or not a database gives an *OpenError
// that says what to do, never a panic.
package uidstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Key names a mailbox: the same user on the same server and port is the
// same mailbox, whatever the account is called in the config.
type Key struct {
	Server string
	Port   int
	User   string
}

// String returns the bucket name, "user@server:port".
func (k Key) String() string {
	return k.User + "@" + k.Server + ":" + strconv.Itoa(k.Port)
}

func (k Key) bucket() []byte { return []byte(k.String()) }

// ErrLocked is matched (with errors.Is) by the error Open returns when
// another process holds the database.
var ErrLocked = errors.New("another popfetch holds the state")

// LockedError reports that the database stayed locked for the whole timeout.
type LockedError struct {
	Path    string
	Timeout time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("uidstore: %s: %v (waited %v)", e.Path, ErrLocked, e.Timeout)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Store is an open UID database.
type Store struct {
	db   *bolt.DB
	path string
}

// pendingBucket holds a bucket per mailbox of pending deliveries. Mailbox
// buckets are named user@server:port, so the name cannot clash.
var pendingBucket = []byte("pending")

// initialMmapSize is the address space the store maps when it opens.
const initialMmapSize = 4 << 20

// Open opens or creates the database at path, creating its directory (mode
// 0700) if needed, and refusing one another user could write in (see
// CheckDir). If another process holds it, Open waits up to timeout
// (zero: not at all) and then returns a *LockedError. A file that cannot
// be used gives an *OpenError.
func Open(path string, timeout time.Duration) (*Store, error) {
	if err := CheckDir(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, &OpenError{Path: path, Err: err}
	}
	if timeout <= 0 {
		timeout = time.Millisecond // bbolt treats zero as "wait forever"
	}
	var db *bolt.DB
	var file *os.File // bbolt's, so that a panic in Open does not leave it open and locked
	// InitialMmapSize: a store grows by remapping (32 KiB, doubling),
	// each remap waiting for every read transaction to end; 2000 UIDs
	// recorded into a new store cost four of them, a twentieth of the
	// transfer's CPU. Mapping 4 MiB of address space from the start
	// costs nothing until pages are touched.
	opts := &bolt.Options{Timeout: timeout, InitialMmapSize: initialMmapSize, OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}}
	err := guard(path, func() error {
		if err := checkFile(path); err != nil {
			return err
		}
		var err error
		db, err = bolt.Open(path, 0o600, opts)
		return err
	})
	if err != nil && file != nil {
		file.Close() // after a failed Open bbolt has closed it; a second Close does nothing
	}
	var oerr *OpenError
	switch {
	case err == nil:
		return &Store{db: db, path: path}, nil
	case errors.Is(err, bolt.ErrTimeout):
		return nil, &LockedError{Path: path, Timeout: timeout}
	case errors.As(err, &oerr):
		return nil, err
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrVersionMismatch), errors.Is(err, bolt.ErrChecksum):
		return nil, &OpenError{Path: path, Damaged: true, Err: err}
	}
	return nil, &OpenError{Path: path, Err: err}
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Close releases the database and its lock.
func (s *Store) Close() error { return s.db.Close() }

// view and update run a transaction, turning a panic on a damaged page
// into an *OpenError.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	return guard(s.path, func() error { return s.db.View(fn) })
}

func (s *Store) update(fn func(*bolt.Tx) error) error {
	return guard(s.path, func() error { return s.db.Update(fn) })
}

// Seen reports, for each of uids, whether it is recorded for the mailbox.
// It reads in one transaction.
func (s *Store) Seen(key Key, uids []string) ([]bool, error) {
	first, err := s.FirstSeen(key, uids)
	if err != nil {
		return nil, err
	}
	seen := make([]bool, len(uids))
	for i, t := range first {
		seen[i] = !t.IsZero()
	}
	return seen, nil
}

// FirstSeen returns, for each of uids, when it was first recorded for the
// mailbox; the zero time if it is not recorded. It reads in one
// transaction. A record without a time counts as recorded at the Unix
// epoch.
func (s *Store) FirstSeen(key Key, uids []string) ([]time.Time, error) {
	first := make([]time.Time, len(uids))
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(key.bucket())
		if b == nil {
			return nil
		}
		// One cursor and one buffer for every look-up: Bucket.Get makes a
		// cursor per call, which for a listing of 50,000 UIDs was most of
		// the poll's garbage.
		c := b.Cursor()
		var buf []byte
		for i, u := range uids {
			buf = append(buf[:0], u...)
			if k, v := c.Seek(buf); k != nil && string(k) == u && v != nil {
				first[i] = decodeTime(v)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("uidstore: read %s: %w", key, err)
	}
	return first, nil
}

// Rename moves a record from the UID Old to the UID New, keeping when it
// was first seen.
type Rename struct {
	Old, New string
	First    time.Time
}

// Rename applies renames in one transaction: for UIDs whose form changed
// (an older popfetch stored some raw that are now kept escaped), so that
// their messages are not taken for new.
func (s *Store) Rename(key Key, renames []Rename) error {
	if len(renames) == 0 {
		return nil
	}
	for _, r := range renames {
		if err := checkUID(r.New); err != nil {
			return fmt.Errorf("uidstore: rename in %s: %w", key, err)
		}
	}
	err := s.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(key.bucket())
		if err != nil {
			return err
		}
		for _, r := range renames {
			if err := b.Put([]byte(r.New), encodeRecord(r.First)); err != nil {
				return err
			}
			if err := b.Delete([]byte(r.Old)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("uidstore: rename in %s: %w", key, err)
	}
	return nil
}

// decodeTime returns the first-seen time of a record: zero for none, the
// epoch for a record without a readable time.
func decodeTime(v []byte) time.Time {
	switch {
	case v == nil:
		return time.Time{}
	case len(v) == 9 && v[0] == recordVersion:
		return time.Unix(int64(binary.BigEndian.Uint64(v[1:])), 0)
	}
	return time.Unix(0, 0)
}

// Record marks uids as delivered for the mailbox, in one committed (and
// fsync'd) transaction, and drops their pending records. A UID already
// recorded keeps its first-seen time.
func (s *Store) Record(key Key, uids ...string) error {
	return s.RecordAt(key, time.Now(), uids...)
}

// RecordAt is Record with a first-seen time of at, for UIDs taken over
// from elsewhere (an import, another tool's state).
func (s *Store) RecordAt(key Key, at time.Time, uids ...string) error {
	if len(uids) == 0 {
		return nil
	}
	now := encodeRecord(at)
	err := s.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(key.bucket())
		if err != nil {
			return err
		}
		pb := pendingOf(tx, key)
		for _, u := range uids {
			if err := checkUID(u); err != nil {
				return err
			}
			if pb != nil {
				if err := pb.Delete([]byte(u)); err != nil {
					return err
				}
			}
			if b.Get([]byte(u)) != nil {
				continue
			}
			if err := b.Put([]byte(u), now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("uidstore: record in %s: %w", key, err)
	}
	return nil
}

// Prune forgets the UIDs of the mailbox that are not in present, the
// complete UIDL listing of a successful session: those messages are gone
// from the server. It returns how many were forgotten.
func (s *Store) Prune(key Key, present []string) (int, error) {
	keep := make(map[string]struct{}, len(present))
	for _, u := range present {
		keep[u] = struct{}{}
	}
	return s.PruneExcept(key, func(uid []byte) bool {
		_, ok := keep[string(uid)]
		return ok
	})
}

// PruneExcept is Prune with the UIDs still present given by a function,
// which a caller can answer without holding every UID.
func (s *Store) PruneExcept(key Key, present func(uid []byte) bool) (int, error) {
	removed := 0
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(key.bucket())
		if b == nil {
			return nil
		}
		var gone [][]byte
		b.ForEach(func(k, _ []byte) error {
			if !present(k) {
				gone = append(gone, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range gone {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		removed = len(gone)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("uidstore: prune %s: %w", key, err)
	}
	return removed, nil
}

// Count returns how many UIDs are recorded for the mailbox.
func (s *Store) Count(key Key) (int, error) {
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(key.bucket()); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n, err
}

// record layout: 1 byte version, 8 bytes first-seen time in Unix seconds.
const recordVersion = 1

func encodeRecord(t time.Time) []byte {
	v := make([]byte, 9)
	v[0] = recordVersion
	binary.BigEndian.PutUint64(v[1:], uint64(t.Unix()))
	return v
}

// checkUID refuses what cannot be a key, or a line of an export.
func checkUID(u string) error {
	switch {
	case u == "":
		return errors.New("empty UID")
	case len(u) > bolt.MaxKeySize:
		return fmt.Errorf("UID of %d octets is too long", len(u))
	case strings.ContainsAny(u, "\r\n"):
		return fmt.Errorf("UID %q contains a line break", u)
	}
	return nil
}

// Pending is a delivery that was begun: it is recorded before the message
// can become visible in its target, and replaced by the UID's record
// (Record) once the delivery is durable. A pending record found at the
// start of a poll means a run was interrupted in between, and the target
// is asked whether the message arrived.
//
// Kind says which target the record is for, and how Dir and Name are
// read. "" (every record written before there were other kinds) is a
// Maildir: Dir is the Maildir, and the message is delivered if Name is in
// its new/ or cur/ directory. Any other kind ("imap", "gmail") belongs to
// the deliverer of that name: Dir is the target's identity (which server,
// user and folder), Name is the deliverer's own lookup key, opaque here.
type Pending struct {
	UID  string
	Kind string // "" for a Maildir
	Dir  string // the Maildir, or the target's identity
	Name string // the file name in new/ (in cur/, with flags after it), or the lookup key
	// Time is when the record was written, to the second (set by
	// Pending; Pend ignores it).
	Time time.Time
}

// pendingOf returns the mailbox's bucket of pending records, or nil.
func pendingOf(tx *bolt.Tx, key Key) *bolt.Bucket {
	if pb := tx.Bucket(pendingBucket); pb != nil {
		return pb.Bucket(key.bucket())
	}
	return nil
}

// pendingVersionKind marks a pending record of a Kind other than "".
const pendingVersionKind = 2

// pending record layout: 1 byte version, 8 bytes time in Unix seconds,
// then for version 2 only the kind's length as a uvarint and the kind,
// then the directory's length as a uvarint, the directory, the name. A
// Maildir's record (Kind "") keeps version 1, the layout of the records
// written before there were kinds, so that either reads the other's.
func encodePending(p Pending, t time.Time) []byte {
	v := make([]byte, 9, 9+2*binary.MaxVarintLen64+len(p.Kind)+len(p.Dir)+len(p.Name))
	v[0] = recordVersion
	if p.Kind != "" {
		v[0] = pendingVersionKind
	}
	binary.BigEndian.PutUint64(v[1:], uint64(t.Unix()))
	if p.Kind != "" {
		v = binary.AppendUvarint(v, uint64(len(p.Kind)))
		v = append(v, p.Kind...)
	}
	v = binary.AppendUvarint(v, uint64(len(p.Dir)))
	v = append(v, p.Dir...)
	return append(v, p.Name...)
}

func decodePending(uid string, v []byte) (Pending, error) {
	damaged := fmt.Errorf("pending record of UID %q is damaged", uid)
	if len(v) < 10 || (v[0] != recordVersion && v[0] != pendingVersionKind) {
		return Pending{}, damaged
	}
	p := Pending{UID: uid, Time: time.Unix(int64(binary.BigEndian.Uint64(v[1:9])), 0)}
	rest := v[9:]
	field := func() (string, bool) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return "", false
		}
		f := string(rest[k : k+int(n)])
		rest = rest[k+int(n):]
		return f, true
	}
	var ok bool
	if v[0] == pendingVersionKind {
		if p.Kind, ok = field(); !ok || p.Kind == "" {
			return Pending{}, damaged
		}
	}
	if p.Dir, ok = field(); !ok {
		return Pending{}, damaged
	}
	p.Name = string(rest)
	return p, nil
}

// Pend records deliveries about to be made, in one committed (and
// fsync'd) transaction. Only once it returns may the messages be moved
// into their Maildir, or sent to their target.
func (s *Store) Pend(key Key, ps []Pending) error {
	if len(ps) == 0 {
		return nil
	}
	now := time.Now()
	err := s.update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(pendingBucket)
		if err != nil {
			return err
		}
		b, err := root.CreateBucketIfNotExists(key.bucket())
		if err != nil {
			return err
		}
		for _, p := range ps {
			if err := checkUID(p.UID); err != nil {
				return err
			}
			if p.Dir == "" || p.Name == "" {
				return fmt.Errorf("pending record of UID %q without a file name", p.UID)
			}
			if len(p.Kind) > 64 {
				return fmt.Errorf("pending record of UID %q of kind %.64q...", p.UID, p.Kind)
			}
			if err := b.Put([]byte(p.UID), encodePending(p, now)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("uidstore: record pending deliveries in %s: %w", key, err)
	}
	return nil
}

// Pending returns the mailbox's pending deliveries, in UID order. Without
// any it costs one bucket look-up.
func (s *Store) Pending(key Key) ([]Pending, error) {
	var ps []Pending
	err := s.view(func(tx *bolt.Tx) error {
		b := pendingOf(tx, key)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			p, err := decodePending(string(k), v)
			ps = append(ps, p)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("uidstore: read pending deliveries of %s: %w", key, err)
	}
	return ps, nil
}

// Unpend drops the pending records of uids: their deliveries did not
// happen, and the messages are to be fetched again.
func (s *Store) Unpend(key Key, uids ...string) error {
	if len(uids) == 0 {
		return nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := pendingOf(tx, key)
		if b == nil {
			return nil
		}
		for _, u := range uids {
			if err := b.Delete([]byte(u)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("uidstore: drop pending deliveries of %s: %w", key, err)
	}
	return nil
}

// Each calls fn for every UID recorded for the mailbox, in UID order, with
// the time it was first recorded (the epoch if the record does not say).
func (s *Store) Each(key Key, fn func(uid string, first time.Time) error) error {
	return s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(key.bucket())
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			return fn(string(k), decodeTime(v))
		})
	})
}

// Forget removes uids (and any pending records of them) from the
// mailbox, so that their messages count as new again; it drops the
// mailbox's Summary, which would otherwise still say they are delivered. It returns how many
// were recorded.
func (s *Store) Forget(key Key, uids ...string) (int, error) {
	n := 0
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(key.bucket())
		pb := pendingOf(tx, key)
		if err := dropSummary(tx, key); err != nil {
			return err
		}
		for _, u := range uids {
			if b != nil && b.Get([]byte(u)) != nil {
				n++
				if err := b.Delete([]byte(u)); err != nil {
					return err
				}
			}
			if pb != nil {
				if err := pb.Delete([]byte(u)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("uidstore: forget in %s: %w", key, err)
	}
	return n, nil
}

// ForgetAll removes every UID, pending record and the Summary of the
// mailbox, and returns how many UIDs were recorded.
func (s *Store) ForgetAll(key Key) (int, error) {
	n := 0
	err := s.update(func(tx *bolt.Tx) error {
		if err := dropSummary(tx, key); err != nil {
			return err
		}
		if b := tx.Bucket(key.bucket()); b != nil {
			n = b.Stats().KeyN
			if err := tx.DeleteBucket(key.bucket()); err != nil {
				return err
			}
		}
		if root := tx.Bucket(pendingBucket); root != nil && root.Bucket(key.bucket()) != nil {
			return root.DeleteBucket(key.bucket())
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("uidstore: forget %s: %w", key, err)
	}
	return n, nil
}
