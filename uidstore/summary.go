package uidstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// summaryBucket holds one record per mailbox: a Summary. Mailbox buckets
// are named user@server:port, so the name cannot clash.
var summaryBucket = []byte("summary")

// Summary is what the last clean poll of a mailbox kept on the server
// found, so that the next poll can tell from the message count, the
// maildrop's size and the UIDs of its first and last messages whether
// anything was appended, without listing every message again.
//
// A caller writes it only when every one of messages 1..Count has its UID
// recorded. Forget and ForgetAll drop it in the same transaction as the
// UIDs, since messages whose UIDs are forgotten are to be fetched again;
// a caller drops it (DropSummary) before anything that may delete a
// message of 1..Count from the server.
type Summary struct {
	Count    int    // messages in the maildrop
	Size     int64  // their octets, as STAT counts them
	FirstUID string // the UID of message 1; "" if Count is 0
	LastUID  string // the UID of message Count
	// Polls counts the polls that trusted the summary since the last
	// full listing.
	Polls int
	// Config is a fingerprint of the account's settings that decide
	// which messages are fetched; a summary written under others is not
	// trusted.
	Config uint64
	// NoProbe records that the server refused UIDL for a single message:
	// the summary cannot be checked there, and is not trusted.
	NoProbe bool
	At      time.Time // when it was written
}

// summary record layout: 1 byte version, 1 byte flags, then uvarints:
// count, size, polls, at (Unix seconds); 8 bytes config; uvarint length
// and octets of FirstUID, then LastUID.
const summaryVersion = 1

const summaryNoProbe = 1

func encodeSummary(s Summary) []byte {
	v := make([]byte, 0, 48+len(s.FirstUID)+len(s.LastUID))
	var flags byte
	if s.NoProbe {
		flags |= summaryNoProbe
	}
	v = append(v, summaryVersion, flags)
	v = binary.AppendUvarint(v, uint64(s.Count))
	v = binary.AppendUvarint(v, uint64(s.Size))
	v = binary.AppendUvarint(v, uint64(s.Polls))
	v = binary.AppendUvarint(v, uint64(s.At.Unix()))
	v = binary.BigEndian.AppendUint64(v, s.Config)
	v = binary.AppendUvarint(v, uint64(len(s.FirstUID)))
	v = append(v, s.FirstUID...)
	v = binary.AppendUvarint(v, uint64(len(s.LastUID)))
	return append(v, s.LastUID...)
}

var errSummary = errors.New("summary record is damaged")

func decodeSummary(v []byte) (Summary, error) {
	if len(v) < 2 || v[0] != summaryVersion {
		return Summary{}, errSummary
	}
	s := Summary{NoProbe: v[1]&summaryNoProbe != 0}
	v = v[2:]
	var nums [4]uint64
	for i := range nums {
		n, k := binary.Uvarint(v)
		if k <= 0 {
			return Summary{}, errSummary
		}
		nums[i], v = n, v[k:]
	}
	if nums[0] > 1<<40 || nums[1] > 1<<62 || nums[2] > 1<<30 || nums[3] > 1<<62 || len(v) < 8 {
		return Summary{}, errSummary
	}
	s.Count, s.Size, s.Polls, s.At = int(nums[0]), int64(nums[1]), int(nums[2]), time.Unix(int64(nums[3]), 0)
	s.Config, v = binary.BigEndian.Uint64(v), v[8:]
	for _, dst := range []*string{&s.FirstUID, &s.LastUID} {
		n, k := binary.Uvarint(v)
		if k <= 0 || n > uint64(len(v)-k) {
			return Summary{}, errSummary
		}
		*dst, v = string(v[k:k+int(n)]), v[k+int(n):]
	}
	if len(v) != 0 {
		return Summary{}, errSummary
	}
	return s, nil
}

// Summary returns the mailbox's summary; ok is false if it has none. A
// damaged record counts as none: it is only ever a shortcut.
func (s *Store) Summary(key Key) (sum Summary, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(summaryBucket)
		if b == nil {
			return nil
		}
		if v := b.Get(key.bucket()); v != nil {
			if d, derr := decodeSummary(v); derr == nil {
				sum, ok = d, true
			}
		}
		return nil
	})
	if err != nil {
		return Summary{}, false, fmt.Errorf("uidstore: read the summary of %s: %w", key, err)
	}
	return sum, ok, nil
}

// SetSummary writes the mailbox's summary, in one committed (and fsync'd)
// transaction.
func (s *Store) SetSummary(key Key, sum Summary) error {
	err := s.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(summaryBucket)
		if err != nil {
			return err
		}
		return b.Put(key.bucket(), encodeSummary(sum))
	})
	if err != nil {
		return fmt.Errorf("uidstore: write the summary of %s: %w", key, err)
	}
	return nil
}

// DropSummary removes the mailbox's summary, if it has one (without one
// it writes nothing).
func (s *Store) DropSummary(key Key) error {
	if _, ok, err := s.Summary(key); err != nil || !ok {
		return err
	}
	err := s.update(func(tx *bolt.Tx) error { return dropSummary(tx, key) })
	if err != nil {
		return fmt.Errorf("uidstore: drop the summary of %s: %w", key, err)
	}
	return nil
}

func dropSummary(tx *bolt.Tx, key Key) error {
	if b := tx.Bucket(summaryBucket); b != nil {
		return b.Delete(key.bucket())
	}
	return nil
}
