package session

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
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
	var skipped Unreadable
	err := r.Each(bucket, func(key, val []byte) error {
		var v T
		if err := json.Unmarshal(val, &v); err != nil {
			skipped.Add(key, err)
			return nil
		}
		return fn(&v)
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
