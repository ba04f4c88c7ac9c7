package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/golang/snappy"
)

// RecChunks is a block of a recorded stream's body as the client received
// it (bucket rec_events, binary value): the pieces of the body in order,
// each with its time since the stream's Start. A proxy's recorder writes
// blocks instead of one RecEvent per frame: a piece costs a copy on the
// proxy's path and a few bytes in the file, and a reader rebuilds the
// very RecEvents the frame-by-frame recording gave, by feeding the pieces
// to the SSE parser in order (every frame completed by a piece takes the
// piece's offset), as recording.Read does.
//
// The value describes itself: a JSON RecEvent starts with '{', a block
// with the byte RecChunksFormat. So one bucket holds both (files written
// before blocks, and recordings imported from jsonl, keep one JSON
// RecEvent per frame) without a schema version change, and a reader that
// does not know blocks fails on them loudly rather than reading a stream
// without its frames.
//
// Value layout: RecChunksFormat, uvarint Frames, then the pieces
// compressed as one Snappy block (github.com/golang/snappy: SSE is
// repetitive text, and the disk, not the CPU, is what a flood of events
// runs into); uncompressed, every piece is uvarint offset (nanoseconds
// since Start), uvarint length<<1 | gap, and length bytes. A value whose
// first byte is RecChunksRaw holds the pieces uncompressed. gap is set on the first piece after pieces were dropped
// (the recorder's budget was spent): a reader starts the parser over
// there, as a client does after a reconnect, keeping the last event ID.
type RecChunks struct {
	Proxy  string
	ConnID string
	// Block numbers the stream's blocks from 0: the key's last part.
	Block int
	// Frames is how many frames (events, comments, retries) the pieces of
	// this block complete, as counted by the recorder.
	Frames int
	// Data holds the encoded pieces (AppendRecChunk).
	Data []byte
}

// First bytes of a block's value: pieces compressed (what the recorder
// writes), or not.
const (
	RecChunksRaw    = 0x01
	RecChunksFormat = 0x02
)

func (RecChunks) Bucket() string { return BucketRecEvents }

// Key is "<proxy>/<conn id>/<block, 10 digits>": a stream's blocks are
// contiguous and in order, as its JSON RecEvents are.
func (c RecChunks) Key() []byte { return c.AppendKey(nil) }

// AppendKey appends the block's key (the writer builds keys in a buffer
// of its own).
func (c RecChunks) AppendKey(b []byte) []byte { return appendItemKey(b, c.Proxy, c.ConnID, c.Block) }

// recItemKey is the key of a recorded stream's n-th frame or block:
// "<proxy>/<conn id>/<n, ten digits>".
func recItemKey(proxy, connID string, n int) []byte {
	return appendItemKey(make([]byte, 0, len(proxy)+len(connID)+12), proxy, connID, n)
}

func appendItemKey(b []byte, proxy, connID string, n int) []byte {
	b = append(b, proxy...)
	b = append(b, '/')
	b = append(b, connID...)
	b = append(b, '/')
	return appendPadded(b, n, 10)
}

// QueueBytes is what the block holds in the writer's queue.
func (c RecChunks) QueueBytes() int { return len(c.Data) + len(c.Proxy) + len(c.ConnID) + 32 }

// AppendValue appends the block's value, its pieces compressed.
func (c RecChunks) AppendValue(b []byte) []byte {
	b = append(b, RecChunksFormat)
	b = binary.AppendUvarint(b, uint64(c.Frames))
	n := len(b)
	b = slices.Grow(b, snappy.MaxEncodedLen(len(c.Data)))
	enc := snappy.Encode(b[n:cap(b)], c.Data)
	return b[:n+len(enc)]
}

// AppendRecChunk appends one piece to a block's Data.
func AppendRecChunk(b []byte, offset time.Duration, gap bool, piece []byte) []byte {
	b = binary.AppendUvarint(b, uint64(max(offset, 0)))
	n := uint64(len(piece)) << 1
	if gap {
		n |= 1
	}
	b = binary.AppendUvarint(b, n)
	return append(b, piece...)
}

// RecChunkOverhead bounds the bytes AppendRecChunk adds to a piece.
const RecChunkOverhead = 2 * binary.MaxVarintLen64

// IsRecChunks reports whether a rec_events value is a block.
func IsRecChunks(val []byte) bool {
	return len(val) > 0 && (val[0] == RecChunksFormat || val[0] == RecChunksRaw)
}

// maxBlockBytes bounds a block's pieces when read back (a damaged value
// must not make a reader allocate more).
const maxBlockBytes = 64 << 20

// ErrBadRecChunks is returned for a block value that does not decode.
var ErrBadRecChunks = errors.New("damaged recording block")

// DecodeRecChunks calls fn with every piece of a block value, in order,
// and returns the block's frame count. The piece aliases val.
func DecodeRecChunks(val []byte, fn func(offset time.Duration, gap bool, piece []byte) error) (frames int, err error) {
	if !IsRecChunks(val) {
		return 0, fmt.Errorf("%w: format byte %#x", ErrBadRecChunks, firstByte(val))
	}
	b := val[1:]
	f, n := binary.Uvarint(b)
	if n <= 0 || f > 1<<40 {
		return 0, fmt.Errorf("%w: frame count", ErrBadRecChunks)
	}
	b = b[n:]
	if val[0] == RecChunksFormat {
		size, err := snappy.DecodedLen(b)
		if err != nil || size > maxBlockBytes {
			return 0, fmt.Errorf("%w: compressed pieces", ErrBadRecChunks)
		}
		if b, err = snappy.Decode(make([]byte, size), b); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrBadRecChunks, err)
		}
	}
	for len(b) > 0 {
		off, n := binary.Uvarint(b)
		if n <= 0 || off > 1<<62 {
			return 0, fmt.Errorf("%w: piece offset", ErrBadRecChunks)
		}
		b = b[n:]
		l, n := binary.Uvarint(b)
		if n <= 0 || l>>1 > uint64(len(b)-n) {
			return 0, fmt.Errorf("%w: piece length", ErrBadRecChunks)
		}
		b = b[n:]
		size := int(l >> 1)
		if err := fn(time.Duration(off), l&1 == 1, b[:size:size]); err != nil {
			return 0, err
		}
		b = b[size:]
	}
	return int(f), nil
}

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// Block buffers: a recorder fills a block in a pooled buffer, small at
// first and a large one when it grows (a slow stream holds little, a fast
// one never regrows), and the Writer gives the buffer back once the block
// is committed (or dropped). The pools hold buffers of exactly these
// capacities.
const (
	smallBlockCap = 4 << 10
	largeBlockCap = 40 << 10
)

var (
	smallBlocks = sync.Pool{New: func() any { return new([smallBlockCap]byte) }}
	largeBlocks = sync.Pool{New: func() any { return new([largeBlockCap]byte) }}
)

// BlockBuf returns an empty buffer for a block's Data.
func BlockBuf() []byte { return smallBlocks.Get().(*[smallBlockCap]byte)[:0] }

// GrowBlock makes room for n more bytes in b, moving it to a large pooled
// buffer when it fits there.
func GrowBlock(b []byte, n int) []byte {
	if len(b)+n <= cap(b) {
		return b
	}
	if cap(b) == smallBlockCap && len(b)+n <= largeBlockCap {
		nb := largeBlocks.Get().(*[largeBlockCap]byte)[:len(b)]
		copy(nb, b)
		ReleaseBlockBuf(b)
		return nb
	}
	return slices.Grow(b, n)
}

// BlockFits reports whether n more bytes fit b without leaving the
// pooled buffers: a producer queues its block first when they do not,
// rather than regrow it past them.
func BlockFits(b []byte, n int) bool { return len(b)+n <= largeBlockCap }

// ReleaseBlockBuf gives a block buffer back (one of another size is left
// to the collector).
func ReleaseBlockBuf(b []byte) {
	switch cap(b) {
	case smallBlockCap:
		smallBlocks.Put((*[smallBlockCap]byte)(b[:smallBlockCap]))
	case largeBlockCap:
		largeBlocks.Put((*[largeBlockCap]byte)(b[:largeBlockCap]))
	}
}

var recChunksPool = sync.Pool{New: func() any { return new(RecChunks) }}

// NewRecChunks returns a pooled block record; the Writer gives it back,
// with its Data, once the block is committed or dropped.
func NewRecChunks() *RecChunks { return recChunksPool.Get().(*RecChunks) }

// release gives a pooled block and its buffer back.
func (c *RecChunks) release() {
	ReleaseBlockBuf(c.Data)
	*c = RecChunks{}
	recChunksPool.Put(c)
}
