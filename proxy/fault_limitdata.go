package proxy

import (
	"fmt"
	"sync/atomic"
	"time"
)

// limitDataKind is the fault kind limit-data.
var limitDataKind = &kind{
	summary: "close (FIN) once bytes have passed", directional: true, defaultDir: DirDown,
	keys:  []keyDoc{{"bytes", "bytes that pass before the close (required)"}},
	build: buildLimitData,
}

type byteLimit struct {
	bytes  int64
	action string
}

func buildLimitData(fs FaultSpec, scale float64) (behaviour, error) {
	n, err := paramBytes(fs, "bytes")
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("limit-data needs bytes=N")
	}
	return byteLimit{n, ActionFIN}, nil
}

func (b byteLimit) attach(a *attachment) any {
	return &byteLimitEffect{a: a, b: b, base: a.h.bytes(a.dirs)}
}

type byteLimitEffect struct {
	a    *attachment
	b    byteLimit
	base int64 // bytes already passed when the fault attached
	done atomic.Bool
}

func (e *byteLimitEffect) remaining() int64 {
	if e.done.Load() {
		return 0
	}
	if !e.a.active(time.Now()) {
		return -1
	}
	return max(e.base+e.b.bytes-e.a.h.bytes(e.a.dirs), 0)
}

func (e *byteLimitEffect) reached() {
	if !e.done.CompareAndSwap(false, true) {
		return
	}
	e.a.fire(e.b.action, fmt.Sprintf("after %d bytes %s", e.b.bytes, e.a.dirs))
	e.a.closeConn(e.b.action)
}
