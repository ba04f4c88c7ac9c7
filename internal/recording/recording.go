package recording

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// ErrEmpty is returned by Load when a session file holds no recorded
// stream.
var ErrEmpty = errors.New("holds no recorded streams (record with: ssestress proxy --record FILE)")

// Recording is every recorded stream of a session file, with its frames.
type Recording struct {
	Streams []*Stored // ordered by Start, then proxy and connection id
}

// Stored is one recorded stream with its frames in order.
type Stored struct {
	session.RecStream
	Events []session.RecEvent
}

// Name is "<proxy>/<conn id>", the stream's key.
func (s *Stored) Name() string { return s.Proxy + "/" + s.ConnID }

// Load reads the recording of the session file at path. A file without
// recorded streams returns ErrEmpty (wrapped with the path).
func Load(path string) (*Recording, error) {
	r, err := session.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	rec, err := Read(r)
	if err != nil {
		return nil, err
	}
	if len(rec.Streams) == 0 {
		return nil, fmt.Errorf("%s %w", path, ErrEmpty)
	}
	return rec, nil
}

// Read reads the recording held by an open session file (possibly empty).
// Frames whose stream record is missing (a file cut by a crash between the
// two commits cannot produce them, since a stream is queued before its
// frames, but an edited file can) are ignored.
func Read(r *session.Reader) (*Recording, error) {
	rec := &Recording{}
	byKey := map[string]*Stored{}
	err := session.Decode(r, session.BucketRecStreams, func(s *session.RecStream) error {
		st := &Stored{RecStream: *s}
		rec.Streams = append(rec.Streams, st)
		byKey[string(s.Key())] = st
		return nil
	})
	if err != nil {
		return nil, err
	}
	var cur *Stored
	var curPrefix []byte
	var rb blockReader
	err = r.Each(session.BucketRecEvents, func(key, val []byte) error {
		// Keys are "<proxy>/<conn id>/<seq or block>": a stream's frames
		// are contiguous, so the lookup happens once per stream.
		if cur == nil || !bytes.HasPrefix(key, curPrefix) || len(key) != len(curPrefix)+10 {
			i := bytes.LastIndexByte(key, '/')
			if i < 0 {
				cur = nil
				return nil
			}
			cur = byKey[string(key[:i])]
			curPrefix = append(curPrefix[:0], key[:i+1]...)
			rb.reset(cur, r.Path())
			if cur == nil {
				return nil
			}
		}
		if session.IsRecChunks(val) {
			if err := rb.block(val); err != nil {
				return fmt.Errorf("%s: bucket %s key %q: %w", r.Path(), session.BucketRecEvents, key, err)
			}
			return nil
		}
		var e session.RecEvent
		if err := jsonUnmarshal(val, &e); err != nil {
			return fmt.Errorf("%s: bucket %s key %q: %w", r.Path(), session.BucketRecEvents, key, err)
		}
		cur.Events = append(cur.Events, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	rec.sort()
	return rec, nil
}

func (rec *Recording) sort() {
	sort.SliceStable(rec.Streams, func(i, j int) bool {
		a, b := rec.Streams[i], rec.Streams[j]
		if !a.Start.Equal(b.Start) {
			return a.Start.Before(b.Start)
		}
		return a.Name() < b.Name()
	})
}

// Find returns the stream named "<proxy>/<conn id>", or the only stream
// whose connection id is id, or nil.
func (rec *Recording) Find(id string) *Stored {
	var byConn *Stored
	n := 0
	for _, s := range rec.Streams {
		if s.Name() == id {
			return s
		}
		if s.ConnID == id {
			byConn = s
			n++
		}
	}
	if n == 1 {
		return byConn
	}
	return nil
}

// Store queues every record of rec on w (streams, then frames). The keys
// come from the records, so storing a loaded recording reproduces its file.
func (rec *Recording) Store(w *session.Writer) {
	for _, s := range rec.Streams {
		w.Put(s.RecStream)
	}
	for _, s := range rec.Streams {
		for _, e := range s.Events {
			w.Put(e)
		}
	}
}

// Frames is the total number of recorded frames.
func (rec *Recording) Frames() int {
	n := 0
	for _, s := range rec.Streams {
		n += len(s.Events)
	}
	return n
}

// sortEvents orders a stream's frames by Seq, the order of their keys.
func sortEvents(ev []session.RecEvent) {
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].Seq < ev[j].Seq })
}

// blockReader rebuilds a stream's frames from its blocks (session.RecChunks):
// the pieces go through the SSE parser in order, and every frame completed
// by a piece takes the piece's offset, as the recorder's frames always did.
type blockReader struct {
	st     *Stored
	parser sse.Parser
	at     session.Seconds
	failed bool // the parser refused the stream (a line over its bound): what follows is not parsed
}

func (b *blockReader) reset(st *Stored, path string) {
	*b = blockReader{st: st}
}

func (b *blockReader) block(val []byte) error {
	_, err := session.DecodeRecChunks(val, func(offset time.Duration, gap bool, piece []byte) error {
		if b.failed {
			return nil
		}
		if gap {
			// Pieces were dropped here: start over, as a reconnecting
			// client does, with the last event ID kept.
			b.parser.Reset()
		}
		b.at = session.Seconds(offset)
		if err := b.parser.Feed(piece, b.emit); err != nil {
			b.failed = true
		}
		return nil
	})
	return err
}

func (b *blockReader) emit(f *sse.Frame) error {
	b.st.Events = append(b.st.Events, frameEvent(b.st.Proxy, b.st.ConnID, len(b.st.Events), b.at, f))
	return nil
}
