package recording

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// ErrEmpty is returned by Load when a session file holds no recorded
// stream.
var ErrEmpty = errors.New("holds no recorded streams")

// Recording is every recorded stream of a session file, with its frames.
type Recording struct {
	Streams []*Stored // ordered by Start, then proxy and connection id
	// Unreadable counts, per bucket, the records that did not decode and
	// were skipped: one bad record costs that record (or a stream's
	// frames, when it is the stream's), not the recording.
	Unreadable map[string]session.Unreadable
	// SnapshotAt is set when the file was being written (a proxy recording
	// into it): the recording is what the writer had committed at that
	// time (session.OpenCommitted).
	SnapshotAt time.Time
}

// Stored is one recorded stream with its frames in order.
type Stored struct {
	session.RecStream
	Events []session.RecEvent
	// UpstreamErrorAction is what the recording proxy did to this stream's
	// client when its upstream failed (its --on-upstream-error: "reset",
	// "eof" or "abort"), as the client hop's record states it
	// (session.HopConn.OnUpstreamError); "" when the proxy applied none.
	// It is what the client saw of that failure.
	UpstreamErrorAction string
}

// Name is "<proxy>/<conn id>", the stream's key.
func (s *Stored) Name() string { return s.Proxy + "/" + s.ConnID }

// Held is how long the stream lasted as far as the recording knows: until
// its end, or until its last frame (its response while it had none) for a
// stream still open when the file was last written.
func (s *Stored) Held() time.Duration {
	if s.Ended {
		return s.End.D()
	}
	if n := len(s.Events); n > 0 {
		return s.Events[n-1].Offset.D()
	}
	return s.RespAt.D()
}

// Load reads the recording of the session file at path, or of what its
// writer has committed when a proxy is still recording into it
// (SnapshotAt). A finished file without recorded streams returns ErrEmpty
// (wrapped with the path); one still being written may hold none yet.
func Load(path string) (*Recording, error) {
	r, err := session.OpenCommitted(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	rec, err := Read(r)
	if err != nil {
		return nil, err
	}
	rec.SnapshotAt = r.SnapshotAt()
	if len(rec.Streams) == 0 && rec.SnapshotAt.IsZero() {
		return nil, fmt.Errorf("%s %w", path, ErrEmpty)
	}
	return rec, nil
}

// checkStatus refuses a recorded HTTP status no response can carry (0 is
// "no response recorded"): a three-digit code, 100 to 999, as net/http
// writes it.
func checkStatus(status int) error {
	if status != 0 && (status < 100 || status > 999) {
		return fmt.Errorf("HTTP status %d is not a three-digit code", status)
	}
	return nil
}

// Read reads the recording held by an open session file (possibly empty).
// Frames whose stream record is missing (a file cut by a crash between the
// two commits cannot produce them, since a stream is queued before its
// frames, but an edited file can) are ignored.
func Read(r *session.Reader) (*Recording, error) {
	rec := &Recording{Unreadable: map[string]session.Unreadable{}}
	byKey := map[string]*Stored{}
	skipped, err := session.DecodeEach(r, session.BucketRecStreams, func(s *session.RecStream) error {
		if err := checkStatus(s.Status); err != nil {
			return session.SkipRecord(err) // a replay could not answer it
		}
		st := &Stored{RecStream: *s}
		rec.Streams = append(rec.Streams, st)
		byKey[string(s.Key())] = st
		return nil
	})
	if err != nil {
		return nil, err
	}
	if skipped.Records > 0 {
		rec.Unreadable[session.BucketRecStreams] = skipped
	}
	var cur *Stored
	var curPrefix []byte
	var rb blockReader
	badEvents, err := r.EachRecord(session.BucketRecEvents, func(key, val []byte) error {
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
				return session.SkipRecord(err)
			}
			return nil
		}
		var e session.RecEvent
		if err := jsonUnmarshal(val, &e); err != nil {
			return session.SkipRecord(err)
		}
		cur.Events = append(cur.Events, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if badEvents.Records > 0 {
		rec.Unreadable[session.BucketRecEvents] = badEvents
	}
	badHops, err := readUpstreamErrorActions(r, byKey)
	if err != nil {
		return nil, err
	}
	if badHops.Records > 0 {
		rec.Unreadable[session.BucketHopConns] = badHops
	}
	rec.sort()
	return rec, nil
}

// readUpstreamErrorActions sets Stored.UpstreamErrorAction from the client
// hop records of the proxies that recorded the streams. A client hop
// carries one connection's requests ("<conn id>", "<conn id>#2", ...); the
// policy acts on the request whose upstream failed, and a reset or an
// abort ends the connection with it, so it belongs to that connection's
// streams that the upstream side ended with a failure.
func readUpstreamErrorActions(r *session.Reader, byKey map[string]*Stored) (session.Unreadable, error) {
	if len(byKey) == 0 {
		return session.Unreadable{}, nil
	}
	byConn := map[string][]*Stored{}
	for key, st := range byKey {
		conn, _, _ := strings.Cut(key, "#")
		byConn[conn] = append(byConn[conn], st)
	}
	marker := []byte(`"on_upstream_error"`)
	return r.EachRecord(session.BucketHopConns, func(key, val []byte) error {
		if !bytes.HasSuffix(key, []byte("/"+session.HopClient)) || !bytes.Contains(val, marker) {
			return nil
		}
		streams := byConn[string(key[:len(key)-len(session.HopClient)-1])]
		if len(streams) == 0 {
			return nil
		}
		var h session.HopConn
		if err := jsonUnmarshal(val, &h); err != nil {
			return session.SkipRecord(err)
		}
		for _, st := range streams {
			if st.Ended && st.EndedBy != session.EndedByClient && st.Class != "" && st.Class != errclass.EOF {
				st.UpstreamErrorAction = h.OnUpstreamError
			}
		}
		return nil
	})
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
// come from the records, so storing a loaded recording reproduces its
// recorded streams. A stream with an UpstreamErrorAction also gets the
// client hop record that states it, as far as the recording knows that
// hop (its start, its end, its client).
func (rec *Recording) Store(w *session.Writer) {
	for _, s := range rec.Streams {
		w.Put(s.RecStream)
		if s.UpstreamErrorAction != "" {
			conn, _, _ := strings.Cut(s.ConnID, "#")
			ending := session.EndingFIN
			if s.UpstreamErrorAction == "reset" {
				ending = session.EndingRST
			}
			w.Put(session.HopConn{
				Proxy: s.Proxy, ConnID: conn, Hop: session.HopClient, RemoteAddr: s.ClientAddr,
				Method: s.Method, Path: requestPath(s), Status: s.Status,
				Opened: s.Start, Closed: s.Start.Add(s.End.D()), ClosedBy: session.ClosedBySelf, Ending: ending,
				OnUpstreamError: s.UpstreamErrorAction,
			})
		}
	}
	for _, s := range rec.Streams {
		for _, e := range s.Events {
			w.Put(e)
		}
	}
}

// requestPath is the stream's path and query.
func requestPath(s *Stored) string {
	if s.Query == "" {
		return s.Path
	}
	return s.Path + "?" + s.Query
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
