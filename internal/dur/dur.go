// Package dur parses the durations users type: everything time.ParseDuration
// accepts, plus days ("3d", "1d12h"). JSON config values use the same syntax.
package dur

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Parse reads a duration such as "30s", "1h", "72h", "3d" or "1d12h".
// Negative durations are refused.
func Parse(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.ParseFloat(s[:i], 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q (use e.g. 30s, 1h, 72h, 3d)", s)
		}
		days = time.Duration(n * float64(24*time.Hour))
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 30s, 1h, 72h, 3d)", s)
	}
	return days + d, nil
}

// Duration is a time.Duration that reads and writes the syntax of Parse, as
// a flag value and as a JSON string (a JSON number is taken as seconds).
type Duration time.Duration

// String formats like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// Set implements flag.Value.
func (d *Duration) Set(s string) error {
	v, err := Parse(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string such as "1h0m0s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON accepts "72h", "3d" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		return d.Set(s)
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil || secs < 0 {
		return fmt.Errorf("invalid duration %s (use a string such as \"1h\" or a number of seconds)", b)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}
