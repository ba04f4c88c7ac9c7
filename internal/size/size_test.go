package size

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "500": 500, "500B": 500, "64KB": 64_000, "64kB": 64_000, "16MB": 16_000_000, "16mb": 16_000_000,
		"16MiB": 16_777_216, "16mib": 16_777_216, "2GiB": 2 << 30, "1.5GB": 1_500_000_000, "1TB": 1e12,
		"1TiB": 1 << 40, " 10 KB ": 10_000, "0.5KiB": 512,
	} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"":       `invalid size "" (use bytes, or a unit: 64KB, 16MB, 2GiB)`,
		"-5":     `invalid size "-5" (use bytes, or a unit: 64KB, 16MB, 2GiB)`,
		"16M":    `invalid size "16M": M could be MB or MiB; write 16MB (powers of 1000) or 16MiB (powers of 1024)`,
		"1k":     `invalid size "1k": k could be KB or KiB; write 1KB (powers of 1000) or 1KiB (powers of 1024)`,
		"lots":   `invalid size "lots" (use bytes, or a unit: 64KB, 16MB, 2GiB)`,
		"1.5":    `invalid size "1.5": not a whole number of bytes`,
		"5 bits": `invalid size "5 bits" (use bytes, or a unit: 64KB, 16MB, 2GiB)`,
		"1e3":    `invalid size "1e3" (use bytes, or a unit: 64KB, 16MB, 2GiB)`,
	} {
		_, err := Parse(in)
		if err == nil || err.Error() != msg || !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v, want %s", in, err, msg)
		}
	}
}

// TestFormatRoundTrip: Format writes what Parse reads back exactly.
func TestFormatRoundTrip(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1500: "1500B", 2000: "2KB", 1024: "1KiB", 16_000_000: "16MB",
		16_777_216: "16MiB", 3 << 30: "3GiB", 7: "7B"} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
		if back, err := Parse(Format(n)); err != nil || back != n {
			t.Errorf("Parse(Format(%d)) = %d, %v", n, back, err)
		}
	}
}

func TestBytesJSON(t *testing.T) {
	var v struct{ S Bytes }
	for in, want := range map[string]Bytes{`{"S":1000}`: 1000, `{"S":"16MB"}`: 16_000_000, `{"S":"16MiB"}`: 16_777_216} {
		if err := json.Unmarshal([]byte(in), &v); err != nil || v.S != want {
			t.Errorf("%s → %d, %v", in, v.S, err)
		}
	}
	for _, bad := range []string{`{"S":-1}`, `{"S":"16M"}`, `{"S":true}`, `{"S":1.5}`} {
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	b, _ := json.Marshal(Bytes(16_777_216))
	if string(b) != `"16MiB"` {
		t.Errorf("marshal: %s", b)
	}
	var f Bytes
	if err := f.Set("2GiB"); err != nil || !strings.HasPrefix(f.String(), "2GiB") {
		t.Errorf("Set: %v %v", f, err)
	}
}
