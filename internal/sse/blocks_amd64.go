//go:build amd64 && !purego

package sse

import "golang.org/x/sys/cpu"

// haveBlockScan says countEventsAVX2 and countFramesAVX2 run on this CPU.
var haveBlockScan = cpu.X86.HasAVX2 && cpu.X86.HasPOPCNT

// countEventsAVX2 counts events in b, which starts with the LF that ends
// a line; hasData (0 or 1) says whether the block that line belongs to
// has a data field. Thirty-two bytes at a time, it marks each LF followed
// by a blank line (a block's end) and each followed by a data field
// ("data:" or "data" and LF), and counts the ends of blocks with a data
// field since the previous end: with the blocks' ends as zeros in a word
// of ones, adding the data marks carries from each mark to the next end.
// It looks at the LFs whose next five bytes are in b, and returns the
// events and the offset just past the last blank line (0 when it found
// none).
//
//go:noescape
func countEventsAVX2(b []byte, hasData uint64) (events int64, done int)

// countFramesAVX2 is countEventsAVX2 that also counts the comment lines
// before the last blank line, and tells whether a line began with 'r' (a
// retry field, maybe: it does not look further).
//
//go:noescape
func countFramesAVX2(b []byte, hasData uint64) (events, comments int64, done int, retry bool)
