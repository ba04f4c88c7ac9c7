//go:build !linux

package bench

import (
	"context"
	"runtime"
)

// runCapture: live capture needs Linux (AF_PACKET).
func runCapture(ctx context.Context, s *suite) error {
	s.skip(RowCapture, "capture", "live capture needs Linux (AF_PACKET); this is "+runtime.GOOS)
	return nil
}
