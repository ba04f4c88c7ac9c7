package dur

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	good := map[string]time.Duration{
		"30s": 30 * time.Second, "1h": time.Hour, "72h": 72 * time.Hour, "3d": 72 * time.Hour,
		"1d12h": 36 * time.Hour, "0.5d": 12 * time.Hour, "1h30m": 90 * time.Minute, " 5m ": 5 * time.Minute,
		"0": 0, "0.0": 0, "250ms": 250 * time.Millisecond,
	}
	for in, want := range good {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "-1h", "-1s", "xd", "1d-1h", "1w", "3 days", "-5", "inf", "1..2"} {
		_, err := Parse(bad)
		if err == nil {
			t.Errorf("Parse(%q) accepted", bad)
			continue
		}
		if !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q): %v does not wrap ErrSyntax", bad, err)
		}
	}
}

// TestBareNumber: a number without a unit is refused with both readings,
// from text and from JSON alike.
func TestBareNumber(t *testing.T) {
	for _, tc := range []struct{ in, hint string }{
		{"20000", `write "20000ms" (20 s) or "20000s" (5 h 33 min)`},
		{"5000", `write "5000ms" (5 s) or "5000s" (1 h 23 min)`},
		{"3", `write "3ms" (3 ms) or "3s" (3 s)`},
		{"90", `write "90ms" (90 ms) or "90s" (1 min 30 s)`},
		{"0.5", `write "0.5ms" (500 µs) or "0.5s" (500 ms)`},
	} {
		_, err := Parse(tc.in)
		var bn *BareNumberError
		if !errors.As(err, &bn) {
			t.Fatalf("Parse(%q) = %v, want a BareNumberError", tc.in, err)
		}
		if bn.Hint() != tc.hint {
			t.Errorf("Parse(%q) hint\n got %s\nwant %s", tc.in, bn.Hint(), tc.hint)
		}
		var d Duration
		err = json.Unmarshal([]byte(tc.in), &d)
		if !errors.As(err, &bn) || bn.Hint() != tc.hint {
			t.Errorf("JSON %s: %v, want the same hint", tc.in, err)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	var v struct{ D Duration }
	for in, want := range map[string]time.Duration{`{"D":"3d"}`: 72 * time.Hour, `{"D":"90s"}`: 90 * time.Second, `{"D":0}`: 0} {
		if err := json.Unmarshal([]byte(in), &v); err != nil || time.Duration(v.D) != want {
			t.Errorf("%s → %v, %v", in, time.Duration(v.D), err)
		}
	}
	for _, bad := range []string{`{"D":"soon"}`, `{"D":-5}`, `{"D":true}`, `{"D":90}`} {
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	for d, want := range map[time.Duration]string{time.Minute: `"1m"`, 72 * time.Hour: `"72h"`, 90 * time.Minute: `"1h30m"`} {
		b, _ := json.Marshal(Duration(d))
		if string(b) != want {
			t.Errorf("marshal %v: %s, want %s", d, b, want)
		}
		var back Duration
		if err := json.Unmarshal(b, &back); err != nil || time.Duration(back) != d {
			t.Errorf("%s reads back as %v, %v", b, time.Duration(back), err)
		}
	}
}

func TestFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		25109232736 * time.Nanosecond: "25.109s",
		72 * time.Hour:                "72h",
		90 * time.Minute:              "1h30m",
		5 * time.Minute:               "5m",
		61500 * time.Millisecond:      "1m2s",
		250 * time.Millisecond:        "250ms",
		1234567 * time.Nanosecond:     "1.235ms",
		0:                             "0s",
		-2 * time.Second:              "-2s",
	} {
		if got := Format(d); got != want {
			t.Errorf("Format(%v) = %q, want %q", d, got, want)
		}
		if d >= 0 {
			back, err := Parse(Format(d))
			if err != nil || (back-d).Abs() > time.Second/2 {
				t.Errorf("Format(%v) = %q reads back as %v, %v", d, Format(d), back, err)
			}
		}
	}
}

func TestHuman(t *testing.T) {
	for d, want := range map[time.Duration]string{
		20 * time.Second:                               "20 s",
		20000 * time.Second:                            "5 h 33 min",
		83 * time.Minute:                               "1 h 23 min",
		25109232736 * time.Nanosecond:                  "25.11 s",
		4*time.Minute + 5*time.Second:                  "4 min 5 s",
		2 * time.Hour:                                  "2 h",
		76 * time.Hour:                                 "3 d 4 h",
		850 * time.Millisecond:                         "850 ms",
		-(3 * time.Second):                             "-3 s",
		500 * time.Nanosecond:                          "500 ns",
		1500 * time.Nanosecond:                         "1.5 µs",
		59*time.Minute + 59*time.Second:                "59 min 59 s",
		23*time.Hour + 59*time.Minute + 59*time.Second: "24 h",
	} {
		if got := Human(d); got != want {
			t.Errorf("Human(%v) = %q, want %q", d, got, want)
		}
	}
}
