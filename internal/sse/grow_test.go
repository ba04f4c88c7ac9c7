package sse

import (
	"bytes"
	"errors"
	"testing"
)

// TestGrowAskedBeforeBuffersGrow: with Grow set, every byte the parser's
// buffers take is asked for first, the buffers never pass their bounds,
// and a refusal ends the stream with the refusal's error.
func TestGrowAskedBeforeBuffersGrow(t *testing.T) {
	var asked int
	refuse := errors.New("over budget")
	limit := 1 << 20
	p := Parser{MaxEvent: 4 << 20, Grow: func(n int) error {
		if asked+n > limit {
			return refuse
		}
		asked += n
		return nil
	}, Shrink: func(n int) { asked -= n }}
	line := append(append([]byte("data: "), bytes.Repeat([]byte("z"), 16<<10)...), '\n')
	var err error
	fed := 0
	for err == nil && fed < 8<<20 {
		err = p.Feed(line, func(*Frame) error { return nil })
		fed += len(line)
		if held := cap(p.data) + cap(p.partial); held > asked {
			t.Fatalf("buffers hold %d bytes, %d asked for", held, asked)
		}
	}
	if !errors.Is(err, refuse) || p.Feed([]byte("\n"), func(*Frame) error { return nil }) != refuse {
		t.Fatalf("after %d bytes: %v", fed, err)
	}
	// Events within the budget parse as before.
	var got []string
	q := Parser{Grow: func(int) error { return nil }}
	q.Feed([]byte("id: 7\ndata: a\ndata: b\n\n: c\n\ndata: "+string(bytes.Repeat([]byte("y"), 3000))+"\n\n"), func(f *Frame) error {
		got = append(got, string(f.Data)+string(f.Comment))
		return nil
	})
	if len(got) != 3 || got[0] != "a\nb" || got[1] != "c" || len(got[2]) != 3000 || q.LastEventID() != "7" {
		t.Fatalf("frames %q", got)
	}
	if cap(q.data) > 3001*2 {
		t.Fatalf("data buffer %d", cap(q.data))
	}
	q.Reset()
	if q.Grow == nil {
		t.Fatal("Reset dropped Grow")
	}
}
