package analysis

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ssestress/ssestress/internal/session"
)

// jsonDecode is decodeAll's decoder for records without a fast one.
func jsonDecode[T any](data []byte, v *T) error { return json.Unmarshal(data, v) }

// decodeChunk is how many records one decoding goroutine takes at a time.
const decodeChunk = 1024

// decodeAll streams the records of bucket, decoded as T by decode, to fn.
// Decoding is most of a report's time, so it runs on GOMAXPROCS goroutines
// while one goroutine walks the file and fn runs on one goroutine of its
// own, in no particular order. Values are decoded straight from the
// read-only memory map inside one read transaction: nothing is copied
// before decoding.
//
// A record that does not decode is skipped and counted in the returned
// Unreadable: one bad record costs that record, not the report.
func decodeAll[T any](r *session.Reader, bucket string, decode func([]byte, *T) error, fn func(*T)) (session.Unreadable, error) {
	workers := runtime.GOMAXPROCS(0)
	old := r.Version() < session.SchemaVersion // values pass through the schema's migration
	type chunk struct{ keys, vals [][]byte }
	var skipped session.Unreadable
	err := r.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		in := make(chan chunk, workers)
		out := make(chan []T, workers)
		var (
			skipMu   sync.Mutex
			firstKey []byte
			wg       sync.WaitGroup
		)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for c := range in {
					vs := make([]T, len(c.vals))
					n := 0
					for i, v := range c.vals {
						var err error
						if old {
							v, err = r.Upgrade(bucket, c.keys[i], v)
						}
						if err == nil {
							err = decode(v, &vs[n])
						}
						if err != nil {
							skipMu.Lock()
							// The first in key order, whichever worker sees it.
							if skipped.Records == 0 || bytes.Compare(c.keys[i], firstKey) < 0 {
								firstKey = c.keys[i]
								skipped.First = fmt.Sprintf("key %q: %v", c.keys[i], err)
							}
							skipped.Records++
							skipMu.Unlock()
							vs[n] = *new(T)
							continue
						}
						n++
					}
					out <- vs[:n]
				}
			}()
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for vs := range out {
				for i := range vs {
					fn(&vs[i])
				}
			}
		}()
		cur := chunk{make([][]byte, 0, decodeChunk), make([][]byte, 0, decodeChunk)}
		err := b.ForEach(func(k, v []byte) error {
			cur.keys, cur.vals = append(cur.keys, k), append(cur.vals, v)
			if len(cur.vals) == decodeChunk {
				in <- cur
				cur = chunk{make([][]byte, 0, decodeChunk), make([][]byte, 0, decodeChunk)}
			}
			return nil
		})
		if len(cur.vals) > 0 {
			in <- cur
		}
		close(in)
		wg.Wait()
		close(out)
		<-done
		return err
	})
	return skipped, err
}

// connView is the part of a session.ConnRecord a report uses. Decoding
// into it skips the time parsing and string copies of the fields it leaves
// out (URL, addresses, dial and header times, end message), a third of a
// report's decoding time. Its JSON names are session.ConnRecord's; a test
// keeps them so.
type connView struct {
	Attempt    int             `json:"attempt"`
	Scenario   string          `json:"scenario,omitempty"`
	Group      string          `json:"group,omitempty"`
	Start      time.Time       `json:"start"`
	FirstEvent time.Time       `json:"first_event,omitzero"`
	End        time.Time       `json:"end,omitzero"`
	Events     int64           `json:"events"`
	Comments   int64           `json:"comments"`
	MaxGap     session.Seconds `json:"max_gap_s"`
	EndClass   string          `json:"end_class,omitempty"`
	ClosedBy   string          `json:"closed_by,omitempty"`
	// LocalAddr and RemoteAddr tell attribution which proxy client hops
	// were a generated client's.
	LocalAddr  string `json:"local_addr,omitempty"`
	RemoteAddr string `json:"remote_addr,omitempty"`
}
