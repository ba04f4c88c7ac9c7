package attribution

import "testing"

// TestSeen: the one definition of a reset. ECONNRESET and EPIPE are
// resets (a RST segment); UNEXPECTED_EOF is a cut (a FIN inside the
// stream), as are HTTP/2 stream resets and GOAWAYs; a clean EOF is a
// close; statuses are neither.
func TestSeen(t *testing.T) {
	for class, want := range map[string]struct {
		seen         string
		reset, cut   bool
		brokenStream bool
	}{
		"ECONNRESET":           {SeenReset, true, false, true},
		"EPIPE":                {SeenReset, true, false, true},
		"UNEXPECTED_EOF":       {SeenCut, false, true, true},
		"H2_RST_STREAM:CANCEL": {SeenStreamReset, false, true, true},
		"H2_GOAWAY:NO_ERROR":   {SeenGoAway, false, true, true},
		"EOF":                  {SeenClose, false, false, false},
		"ECONNREFUSED":         {SeenRefused, false, false, false},
		"ETIMEDOUT":            {SeenTimeout, false, false, false},
		"HTTP_502":             {SeenOther, false, false, false},
		"":                     {SeenOther, false, false, false},
	} {
		if got := Seen(class); got != want.seen {
			t.Errorf("Seen(%q) = %q, want %q", class, got, want.seen)
		}
		if IsReset(class) != want.reset || IsCut(class) != want.cut || IsBroken(class) != want.brokenStream {
			t.Errorf("%q: reset %v cut %v broken %v, want %v %v %v", class, IsReset(class), IsCut(class), IsBroken(class),
				want.reset, want.cut, want.brokenStream)
		}
	}
}
