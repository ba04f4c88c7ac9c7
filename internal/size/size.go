// Package size parses the byte sizes people type, with one meaning
// everywhere (flags, config files, fault keys, the control API): SI units
// are powers of 1000 and IEC units powers of 1024, each meaning what it
// says. 16MB is 16,000,000 bytes and 16MiB is 16,777,216. A bare integer is
// bytes. A single letter (16M, 16k) is refused: it has been read both ways.
//
// Sizes enter as text or JSON (a number of bytes, or a string with a unit)
// and leave as int64 bytes, or as text through Format.
package size

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrSyntax is wrapped by every error of Parse.
var ErrSyntax = errors.New("invalid size")

// units maps a lower-case unit onto its multiplier.
var units = map[string]float64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// ambiguous are the one-letter units, refused with a hint.
var ambiguous = map[string]string{"k": "KB", "m": "MB", "g": "GB", "t": "TB"}

// Parse reads a size: "500" (bytes), "64KB", "16MB", "2GiB", "1.5GB". The
// result is a whole number of bytes; a negative or fractional byte count is
// refused.
func Parse(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	lower := strings.ToLower(unit)
	if si, ok := ambiguous[lower]; ok && num != "" {
		return 0, fmt.Errorf("%w %q: %s could be %s or %siB; write %s%s (powers of 1000) or %s%siB (powers of 1024)",
			ErrSyntax, s, unit, si, strings.ToUpper(lower), num, si, num, strings.ToUpper(lower))
	}
	mult, ok := units[lower]
	v, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || num == "" {
		return 0, fmt.Errorf("%w %q (use bytes, or a unit: 64KB, 16MB, 2GiB)", ErrSyntax, s)
	}
	b := v * mult
	if b != math.Trunc(b) || b > math.MaxInt64/2 {
		return 0, fmt.Errorf("%w %q: not a whole number of bytes", ErrSyntax, s)
	}
	return int64(b), nil
}

// Format writes n in the largest unit of its convention that divides it:
// IEC when n is a multiple of 1024, SI otherwise ("16MiB", "16MB",
// "1500B"); Parse reads it back exactly.
func Format(n int64) string {
	if n == 0 {
		return "0B"
	}
	for _, u := range []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"TB", 1e12}, {"GiB", 1 << 30}, {"GB", 1e9}, {"MiB", 1 << 20}, {"MB", 1e6}, {"KiB", 1 << 10}, {"KB", 1e3}} {
		if n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// Bytes is a size as a flag value and a JSON value: text in the syntax of
// Parse, or a JSON number of bytes. It writes itself as Format does.
type Bytes int64

// String implements flag.Value.
func (b Bytes) String() string { return Format(int64(b)) }

// Set implements flag.Value.
func (b *Bytes) Set(s string) error {
	n, err := Parse(s)
	if err != nil {
		return err
	}
	*b = Bytes(n)
	return nil
}

// MarshalJSON writes the size as a string such as "16MiB".
func (b Bytes) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON reads a number of bytes or a string in the syntax of Parse.
func (b *Bytes) UnmarshalJSON(raw []byte) error {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return b.Set(s)
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return fmt.Errorf("%w %s (a number of bytes, or a string such as \"16MB\")", ErrSyntax, raw)
	}
	return b.Set(n.String())
}
