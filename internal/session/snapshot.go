package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"time"
)

// ErrKeepsChanging: a snapshot of a file in use could not be taken because
// its writer committed during every copy.
var ErrKeepsChanging = errors.New("is in use by a running ssestress, and it committed during every copy a snapshot tried; stop that process (Ctrl-C: what it committed stays) and read the file then")

// snapshotAttempts bounds the copies OpenCommitted tries.
const snapshotAttempts = 8

// OpenCommitted opens path as Open does; when another process holds it for
// writing (a proxy recording into it, a run), it reads what that process
// has committed instead: a snapshot, a consistent copy of the file as of its
// last commit, taken without the writer's lock and opened read-only
// (SnapshotAt says when). A writer that serves a live view (LiveURL) is
// not copied: ErrInUse names the view, which serves the same report up to
// date without copying the file.
//
// The copy is consistent because bbolt never writes over a page of the
// last committed tree before a later commit: it writes new pages, then the
// meta page that points at them, and a page the last commit freed is
// reused only by the transaction after the next one. So a copy between two
// readings of the meta pages that find the same transaction holds that
// transaction's tree whole. A copy during which a commit happened is
// thrown away and taken again, a few times (ErrKeepsChanging).
func OpenCommitted(path string) (*Reader, error) {
	if !heldForWriting(path) {
		r, err := Open(path)
		if err == nil || !errors.Is(err, ErrInUse) {
			return r, err
		}
	}
	if LiveURL(path) != "" {
		return nil, inUseError(path)
	}
	return openSnapshot(path)
}

// SnapshotAt is, for a Reader of OpenCommitted over a file in use, when the
// snapshot it reads was taken; zero for a file read directly.
func (r *Reader) SnapshotAt() time.Time { return r.snapshotAt }

// openSnapshot copies the committed state of the file at path into a
// temporary file and opens that, as path.
func openSnapshot(path string) (*Reader, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	for attempt := 0; attempt < snapshotAttempts; attempt++ {
		before, ok := lastCommit(src)
		if !ok {
			return nil, fmt.Errorf("%s %w (no valid meta page)", path, ErrNotSession)
		}
		if attempt > 0 {
			// A commit spoiled the last copy: copy right after the next
			// one, when the writer is furthest from its following commit.
			before = nextCommit(src, before, 500*time.Millisecond)
		}
		at := time.Now()
		tmp, err := os.CreateTemp("", "ssestress-snapshot-*.db")
		if err != nil {
			return nil, fmt.Errorf("%s: snapshot: %w", path, err)
		}
		remove := func() { tmp.Close(); os.Remove(tmp.Name()) }
		_, err = io.Copy(tmp, io.NewSectionReader(src, 0, before.size()))
		if err == nil {
			err = tmp.Close()
		}
		if err != nil {
			remove()
			return nil, fmt.Errorf("%s: snapshot: %w", path, err)
		}
		if after, ok := lastCommit(src); !ok || after.txid != before.txid {
			remove() // a commit happened during the copy
			continue
		}
		r, err := Open(tmp.Name())
		if err != nil {
			remove()
			if errors.Is(err, ErrNotSession) || errors.Is(err, ErrTruncated) {
				continue
			}
			return nil, err
		}
		// The open file stays readable once unlinked (Linux); elsewhere the
		// Reader removes it when it closes.
		if os.Remove(tmp.Name()) != nil {
			r.cleanup = func() { os.Remove(tmp.Name()) }
		}
		r.path, r.snapshotAt = path, at
		return r, nil
	}
	return nil, fmt.Errorf("%s %w (%d copies)", path, ErrKeepsChanging, snapshotAttempts)
}

// nextCommit waits, at most limit, for a commit after last and returns it
// (last when none came).
func nextCommit(f *os.File, last commit, limit time.Duration) commit {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if c, ok := lastCommit(f); ok && c.txid != last.txid {
			return c
		}
	}
	return last
}

// commit is what a bbolt meta page says of the last commit.
type commit struct {
	txid      uint64
	pageSize  int64
	highWater int64 // pages in use
}

// size is the length of the file the commit's tree lies in.
func (c commit) size() int64 { return c.pageSize * c.highWater }

// lastCommit reads both meta pages of a bbolt file (layout in checkSize)
// and returns the valid one with the highest transaction id.
func lastCommit(f *os.File) (commit, bool) {
	const hdr, magic, version = 16, 0xED0CDAED, 2
	var best commit
	found := false
	pageSize := int64(0)
	for i := int64(0); i < 2; i++ {
		var m [hdr + 64]byte
		if _, err := f.ReadAt(m[:], i*pageSize); err != nil {
			return best, found
		}
		meta := m[hdr:]
		ps := int64(binary.LittleEndian.Uint32(meta[8:]))
		if i == 0 {
			pageSize = ps
			if ps < 512 || ps > 1<<20 {
				pageSize = int64(os.Getpagesize())
			}
		}
		h := fnv.New64a()
		h.Write(meta[:56])
		if binary.LittleEndian.Uint32(meta[0:]) != magic || binary.LittleEndian.Uint32(meta[4:]) != version ||
			binary.LittleEndian.Uint64(meta[56:]) != h.Sum64() || ps != pageSize {
			continue
		}
		c := commit{pageSize: ps, highWater: int64(binary.LittleEndian.Uint64(meta[40:])), txid: binary.LittleEndian.Uint64(meta[48:])}
		if !found || c.txid > best.txid {
			best, found = c, true
		}
	}
	return best, found
}
