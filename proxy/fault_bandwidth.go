package proxy

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/size"
)

// bandwidthKind is the fault kind bandwidth.
var bandwidthKind = &kind{
	summary: "limit the rate of a direction", directional: true, defaultDir: DirDown,
	keys:  []keyDoc{{"rate", "bytes per second with a unit, e.g. 10KB (10,000 B/s), 64KiB, 500B, or 10KB/s; a bare number is refused (required)"}},
	build: buildBandwidth,
}

type bandwidth struct{ rate int64 }

func buildBandwidth(fs FaultSpec, scale float64) (behaviour, error) {
	v, ok := fs.Params["rate"]
	if !ok {
		return nil, fmt.Errorf("bandwidth needs rate=BYTES per second (e.g. rate=10KB)")
	}
	r, err := parseRate(v)
	if err != nil {
		return nil, fmt.Errorf("rate: %w", err)
	}
	if r <= 0 {
		return nil, fmt.Errorf("rate must be more than 0 bytes per second")
	}
	return bandwidth{r}, nil
}

// parseRate reads a rate in bytes per second: a size with its unit
// ("10KB", "64KiB", "500B"), optionally followed by "/s". A bare number is
// refused: Toxiproxy's bandwidth rate is in KB/s, so "100" has been meant
// as 100 KB/s and read as 100 B/s.
func parseRate(v string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSpace(v), "/s")
	if n, err := strconv.ParseFloat(t, 64); err == nil && t != "" && strings.Trim(t, "0123456789.") == "" {
		if n == 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("%s has no unit — write %sKB (Toxiproxy's KB/s: %s bytes/s) or %sB (%s bytes/s)",
			v, t, strconv.FormatFloat(n*1000, 'f', -1, 64), t, t)
	}
	return size.Parse(t)
}

func (b bandwidth) attach(a *attachment) any { return &bandwidthEffect{a: a, rate: b.rate} }

type bandwidthEffect struct {
	a    *attachment
	rate int64
	mu   sync.Mutex
	next [2]time.Time // per direction: when the link is free again
}

// shape splits pieces into 50 ms worth of bytes and spaces them at rate.
func (e *bandwidthEffect) shape(dir string, now time.Time, ps []piece) []piece {
	if !e.a.active(now) {
		return ps
	}
	if e.a.firstTime() {
		e.a.fire(session.ActionThrottle, fmt.Sprintf("%d bytes/s", e.rate))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	i := dirIndex(dir)
	chunk := int(max(e.rate/20, 1))
	out := make([]piece, 0, len(ps))
	for _, p := range ps {
		for len(p.data) > 0 {
			n := min(chunk, len(p.data))
			at := p.at
			if at.Before(e.next[i]) {
				at = e.next[i]
			}
			out = append(out, piece{data: p.data[:n], at: at})
			e.next[i] = at.Add(time.Duration(int64(n) * int64(time.Second) / e.rate))
			p.data = p.data[n:]
		}
	}
	return out
}
