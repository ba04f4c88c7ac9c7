//go:build !amd64 || purego

package sse

const haveBlockScan = false

func countEventsAVX2(b []byte, hasData uint64) (events int64, done int) { return 0, 0 }

func countFramesAVX2(b []byte, hasData uint64) (events, comments int64, done int, retry bool) {
	return 0, 0, 0, false
}
