// Package uidstore remembers which messages of which mailbox have been
// delivered, by their POP3 unique id (UIDL), in a bbolt database.
//
// Each mailbox has its own bucket, named by its Key (server, port, user).
// A UID is recorded only after its message is safely delivered; a poll asks
// which of the server's UIDs are already known in one read transaction.
// The database file is locked by the process that opens it: a second
// process waits up to a timeout and then gets an error that matches
// ErrLocked.
package uidstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
	db *bolt.DB
}

// Open opens or creates the database at path, creating its directory (mode
// 0700) if needed. If another process holds it, Open waits up to timeout
// (zero: not at all) and then returns a *LockedError.
func Open(path string, timeout time.Duration) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("uidstore: %w", err)
	}
	if timeout <= 0 {
		timeout = time.Millisecond // bbolt treats zero as "wait forever"
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, &LockedError{Path: path, Timeout: timeout}
	}
	if err != nil {
		return nil, fmt.Errorf("uidstore: open %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close releases the database and its lock.
func (s *Store) Close() error { return s.db.Close() }

// Seen reports, for each of uids, whether it is recorded for the mailbox.
// It reads in one transaction.
func (s *Store) Seen(key Key, uids []string) ([]bool, error) {
	seen := make([]bool, len(uids))
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(key.bucket())
		if b == nil {
			return nil
		}
		var buf []byte // reused: no allocation per lookup
		for i, u := range uids {
			buf = append(buf[:0], u...)
			seen[i] = b.Get(buf) != nil
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("uidstore: read %s: %w", key, err)
	}
	return seen, nil
}

// Record marks uids as delivered for the mailbox, in one committed (and
// fsync'd) transaction. A UID already recorded keeps its first-seen time.
func (s *Store) Record(key Key, uids ...string) error {
	if len(uids) == 0 {
		return nil
	}
	now := encodeRecord(time.Now())
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(key.bucket())
		if err != nil {
			return err
		}
		for _, u := range uids {
			if u == "" {
				return errors.New("empty UID")
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
	removed := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(key.bucket())
		if b == nil {
			return nil
		}
		var gone [][]byte
		b.ForEach(func(k, _ []byte) error {
			if _, ok := keep[string(k)]; !ok {
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
	err := s.db.View(func(tx *bolt.Tx) error {
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
