package session

import (
	"errors"
	"math"
	"strconv"
	"time"
)

// Seconds is a duration as the session file stores it: a JSON number of
// seconds, written exactly to the nanosecond ("61.25", "0.000000001"), in
// a key whose name ends in "_s". Every duration in every JSON the tool
// writes (session files, reports, exports, the control API) is seconds, so
// a number means the same thing wherever it appears.
type Seconds time.Duration

// D is the duration.
func (s Seconds) D() time.Duration { return time.Duration(s) }

// Seconds is the duration as a floating-point number of seconds.
func (s Seconds) Seconds() float64 { return time.Duration(s).Seconds() }

// String formats it as time.Duration does.
func (s Seconds) String() string { return time.Duration(s).String() }

// MarshalJSON writes the exact decimal number of seconds.
func (s Seconds) MarshalJSON() ([]byte, error) { return AppendSeconds(nil, time.Duration(s)), nil }

// UnmarshalJSON reads a number of seconds (null leaves it unchanged).
func (s *Seconds) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	d, ok := ParseSeconds(b)
	if !ok {
		return errBadSeconds
	}
	*s = Seconds(d)
	return nil
}

var errBadSeconds = errors.New("not a number of seconds")

// AppendSeconds appends d as an exact decimal number of seconds.
func AppendSeconds(b []byte, d time.Duration) []byte {
	if d < 0 {
		b = append(b, '-')
		if d == math.MinInt64 {
			return append(b, "9223372036.854775808"...)
		}
		d = -d
	}
	b = strconv.AppendInt(b, int64(d/time.Second), 10)
	frac := int64(d % time.Second)
	if frac == 0 {
		return b
	}
	var digits [10]byte
	digits[0] = '.'
	for i := 9; i >= 1; i-- {
		digits[i] = byte('0' + frac%10)
		frac /= 10
	}
	n := 10
	for digits[n-1] == '0' {
		n--
	}
	return append(b, digits[:n]...)
}

// ParseSeconds reads a JSON number of seconds. Plain decimals are read
// exactly; other forms (exponents, more than nine decimals) through a
// float, rounded to the nanosecond. Values out of range are refused.
func ParseSeconds(b []byte) (time.Duration, bool) {
	if len(b) == 0 {
		return 0, false
	}
	neg := b[0] == '-'
	body := b
	if neg {
		body = b[1:]
	}
	var whole, frac int64
	fracDigits := 0
	i := 0
	for ; i < len(body) && body[i] >= '0' && body[i] <= '9'; i++ {
		if whole > (math.MaxInt64/int64(time.Second))/10 {
			return parseSecondsFloat(b)
		}
		whole = whole*10 + int64(body[i]-'0')
	}
	if i == 0 {
		return parseSecondsFloat(b)
	}
	if i < len(body) && body[i] == '.' {
		i++
		start := i
		for ; i < len(body) && body[i] >= '0' && body[i] <= '9'; i++ {
			if fracDigits == 9 {
				return parseSecondsFloat(b)
			}
			frac = frac*10 + int64(body[i]-'0')
			fracDigits++
		}
		if i == start {
			return 0, false
		}
	}
	if i != len(body) {
		return parseSecondsFloat(b)
	}
	for ; fracDigits < 9; fracDigits++ {
		frac *= 10
	}
	if whole > math.MaxInt64/int64(time.Second) {
		return 0, false
	}
	base := time.Duration(whole) * time.Second
	if neg {
		// Summed on the negative side, which reaches one further.
		d := -base - time.Duration(frac)
		return d, d <= 0
	}
	d := base + time.Duration(frac)
	return d, d >= 0
}

func parseSecondsFloat(b []byte) (time.Duration, bool) {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > float64(math.MaxInt64)/1e9 {
		return 0, false
	}
	return time.Duration(math.Round(f * 1e9)), true
}
