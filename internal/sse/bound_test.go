package sse

import (
	"errors"
	"strings"
	"testing"
)

// TestMaxEvent: an event whose data lines add up past MaxEvent ends the
// stream with an *EventTooLongError however the bytes are split, and
// events at the bound are dispatched whole.
func TestMaxEvent(t *testing.T) {
	line := "data: " + strings.Repeat("x", 99) + "\n" // 99 bytes of data each
	for _, piece := range []int{1, 7, 64, 1 << 20} {
		p := Parser{MaxEvent: 1000}
		var got []int
		emit := func(f *Frame) error {
			if f.Kind == KindEvent {
				got = append(got, len(f.Data))
			}
			return nil
		}
		// 10 lines: 990 data bytes and 9 LFs = 999, at the bound.
		stream := strings.Repeat(line, 10) + "\n" + strings.Repeat(line, 11) + "\n"
		var err error
		for i := 0; i < len(stream) && err == nil; i += piece {
			err = p.Feed([]byte(stream[i:min(i+piece, len(stream))]), emit)
		}
		var ete *EventTooLongError
		if !errors.As(err, &ete) || ete.Max != 1000 || !errors.Is(err, ErrEventTooLong) || ete.ErrClass() != "EVENT_TOO_LONG" {
			t.Fatalf("pieces of %d: error %v, want an EventTooLongError with Max 1000", piece, err)
		}
		if len(got) != 1 || got[0] != 999 {
			t.Fatalf("pieces of %d: events of %v bytes, want one of 999", piece, got)
		}
		if err := p.Feed([]byte("data: more\n\n"), emit); !errors.Is(err, ErrEventTooLong) {
			t.Fatalf("pieces of %d: the parser took input after the error: %v", piece, err)
		}
	}
	// The default applies when MaxEvent is zero, and Reset keeps the bound.
	p := Parser{MaxEvent: 10}
	p.Reset()
	if err := p.Feed([]byte("data: 0123456789A\n"), func(*Frame) error { return nil }); !errors.Is(err, ErrEventTooLong) {
		t.Fatalf("after Reset: %v", err)
	}
	var d Parser
	big := "data: " + strings.Repeat("y", 1<<20-10) + "\n"
	var err error
	for i := 0; i < DefaultMaxEvent/(1<<20)+1 && err == nil; i++ {
		err = d.Feed([]byte(big), func(*Frame) error { return nil })
	}
	if !errors.Is(err, ErrEventTooLong) {
		t.Fatalf("default bound: %v", err)
	}
}
