// Package dur parses the durations people type and prints them back
// rounded. Input is everything time.ParseDuration accepts plus days ("3d",
// "1d12h"); a number without a unit is refused (except 0) with both of its
// likely readings, since a TypeScript config thinks in milliseconds and a
// shell script in seconds. JSON config values use the same syntax: a JSON
// number is a bare number too.
//
// Durations enter as text (flags, config files, the control API) and leave
// as time.Duration, or as text through Format (Go syntax, rounded, so it
// reads back) and Human ("5 h 33 min").
package dur

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrSyntax is wrapped by every error of Parse about text that is not a
// duration at all.
var ErrSyntax = errors.New("invalid duration")

// BareNumberError is returned for a number without a unit: it could mean
// milliseconds or seconds, and guessing has run a "20000" for 5 h 33 min.
type BareNumberError struct {
	// Text is the number as written.
	Text string
}

// Value is the number.
func (e *BareNumberError) Value() float64 {
	v, _ := strconv.ParseFloat(e.Text, 64)
	return v
}

// Hint names both readings: write "20000ms" (20 s) or "20000s" (5 h 33 min).
func (e *BareNumberError) Hint() string {
	v := e.Value()
	ms := time.Duration(v * float64(time.Millisecond))
	s := time.Duration(math.Min(v*float64(time.Second), math.MaxInt64))
	return fmt.Sprintf("write %q (%s) or %q (%s)", e.Text+"ms", Human(ms), e.Text+"s", Human(s))
}

func (e *BareNumberError) Error() string {
	return fmt.Sprintf("%s has no unit — %s", e.Text, e.Hint())
}

// Parse reads a duration such as "30s", "1h", "72h", "3d" or "1d12h".
// Negative durations are refused, and so is a bare number other than 0
// (a *BareNumberError).
func Parse(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("%w: empty", ErrSyntax)
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("%w %q: negative", ErrSyntax, s)
	}
	if isNumber(s) {
		v, _ := strconv.ParseFloat(s, 64)
		if v == 0 {
			return 0, nil
		}
		if v < 0 {
			return 0, fmt.Errorf("%w %q: negative", ErrSyntax, s)
		}
		return 0, &BareNumberError{Text: s}
	}
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.ParseFloat(s[:i], 64)
		if err != nil || n < 0 {
			return 0, syntaxError(s)
		}
		days = time.Duration(n * float64(24*time.Hour))
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, syntaxError(s)
	}
	return days + d, nil
}

// isNumber reports whether s is a plain decimal number: digits with at
// most one point, perhaps signed.
func isNumber(s string) bool {
	s = strings.TrimLeft(s, "+-")
	digits, points := 0, 0
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			points++
		default:
			return false
		}
	}
	return digits > 0 && points <= 1
}

func syntaxError(s string) error {
	return fmt.Errorf("%w %q (use e.g. 30s, 1h, 72h, 3d)", ErrSyntax, s)
}

// Duration is a time.Duration that reads the syntax of Parse, as a flag
// value and as a JSON string, and writes Format's.
type Duration time.Duration

// String formats like Format.
func (d Duration) String() string { return Format(time.Duration(d)) }

// Set implements flag.Value.
func (d *Duration) Set(s string) error {
	v, err := Parse(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string such as "1h30m".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON accepts a string in the syntax of Parse ("72h", "3d",
// "250ms"). A JSON number is refused like a bare number in text (0 is
// zero): it returns the *BareNumberError.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		return d.Set(s)
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("%w %s (use a string such as \"1h\")", ErrSyntax, b)
	}
	return d.Set(n.String())
}

// Format writes d in Go's syntax (so Parse reads it back), rounded to what
// a person reads: milliseconds under a minute, seconds above, with zero
// trailing units left out: "25.109s", "1h30m", "72h", "250ms".
func Format(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	switch {
	case d >= time.Minute:
		d = d.Round(time.Second)
	case d >= time.Second:
		d = d.Round(time.Millisecond)
	case d >= time.Millisecond:
		d = d.Round(time.Microsecond)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if neg {
		s = "-" + s
	}
	return s
}

// Human writes d for reading only, in at most two units: "850 ms", "20 s",
// "4 min 5 s", "5 h 33 min", "3 d 4 h".
func Human(d time.Duration) string {
	if d < 0 {
		return "-" + Human(-d)
	}
	two := func(big, small time.Duration, bigName, smallName string) string {
		d = d.Round(small)
		b, s := d/big, (d%big)/small
		if s == 0 {
			return fmt.Sprintf("%d %s", b, bigName)
		}
		return fmt.Sprintf("%d %s %d %s", b, bigName, s, smallName)
	}
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%d ns", d)
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'g', 3, 64) + " µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'g', 3, 64) + " ms"
	case d < time.Minute:
		return strconv.FormatFloat(float64(d.Round(10*time.Millisecond))/float64(time.Second), 'f', -1, 64) + " s"
	case d < time.Hour:
		return two(time.Minute, time.Second, "min", "s")
	case d < 24*time.Hour:
		return two(time.Hour, time.Minute, "h", "min")
	}
	return two(24*time.Hour, time.Hour, "d", "h")
}
