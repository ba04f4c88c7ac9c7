package session

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Unreadable counts the records of one bucket a reader skipped because
// they could not be decoded (a value edited by hand, bits flipped on
// disk), with the first one's key and error: one bad record costs that
// record, never the whole file.
type Unreadable struct {
	Records int64  `json:"records"`
	First   string `json:"first"` // `key "…": what is wrong` of the first skipped record
}

// Add counts one skipped record.
func (u *Unreadable) Add(key []byte, err error) {
	if u.Records == 0 {
		u.First = fmt.Sprintf("key %q: %v", key, err)
	}
	u.Records++
}

// DecodeEach is Decode that skips the records that do not decode as T:
// it calls fn with every record of bucket that does, in key order, and
// returns what it skipped. An error from fn or from reading the file
// still stops it.
func DecodeEach[T any](r *Reader, bucket string, fn func(*T) error) (Unreadable, error) {
	return r.EachRecord(bucket, func(key, val []byte) error {
		var v T
		if err := json.Unmarshal(val, &v); err != nil {
			return SkipRecord(err)
		}
		return fn(&v)
	})
}

// skipError is SkipRecord's error.
type skipError struct{ err error }

func (e skipError) Error() string { return e.err.Error() }

// SkipRecord is what an EachRecord callback returns for a record it could
// not read: the record is counted as unreadable and the walk goes on.
func SkipRecord(err error) error { return skipError{err} }

// EachRecord is Each that skips, and counts, the records that cannot be
// read: a value an older schema's migration cannot upgrade, or one fn
// refuses with SkipRecord. Another error from fn, or one reading the file,
// stops it.
func (r *Reader) EachRecord(bucket string, fn func(key, val []byte) error) (Unreadable, error) {
	var skipped Unreadable
	err := r.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			up, err := r.Upgrade(bucket, k, v)
			if err != nil {
				skipped.Add(k, err) // the migration could not read it
				return nil
			}
			err = fn(k, up)
			var skip skipError
			if errors.As(err, &skip) {
				skipped.Add(k, skip.err)
				return nil
			}
			return err
		})
	})
	return skipped, err
}

// UnreadableSummary prints skipped records per bucket in one line, in the
// schema's bucket order ("conns 1, errors 2"), "" when none were skipped.
func UnreadableSummary(byBucket map[string]Unreadable) string {
	names := make([]string, 0, len(byBucket))
	for b, u := range byBucket {
		if u.Records > 0 {
			names = append(names, b)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		return bucketOrder(names[i]) < bucketOrder(names[j]) || bucketOrder(names[i]) == bucketOrder(names[j]) && names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, b := range names {
		parts[i] = fmt.Sprintf("%s %d", b, byBucket[b].Records)
	}
	return strings.Join(parts, ", ")
}

// bucketOrder is a bucket's place in Buckets (unknown ones last).
func bucketOrder(name string) int {
	for i, b := range Buckets {
		if b == name {
			return i
		}
	}
	return len(Buckets)
}
