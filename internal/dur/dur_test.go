package dur

import (
	"encoding/json"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	good := map[string]time.Duration{
		"30s": 30 * time.Second, "1h": time.Hour, "72h": 72 * time.Hour, "3d": 72 * time.Hour,
		"1d12h": 36 * time.Hour, "0.5d": 12 * time.Hour, "1h30m": 90 * time.Minute, " 5m ": 5 * time.Minute,
	}
	for in, want := range good {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "3", "-1h", "xd", "1d-1h", "1w", "3 days"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	var v struct{ D Duration }
	for in, want := range map[string]time.Duration{`{"D":"3d"}`: 72 * time.Hour, `{"D":90}`: 90 * time.Second} {
		if err := json.Unmarshal([]byte(in), &v); err != nil || time.Duration(v.D) != want {
			t.Errorf("%s → %v, %v", in, time.Duration(v.D), err)
		}
	}
	for _, bad := range []string{`{"D":"soon"}`, `{"D":-5}`, `{"D":true}`} {
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	b, _ := json.Marshal(struct{ D Duration }{Duration(time.Minute)})
	if string(b) != `{"D":"1m0s"}` {
		t.Errorf("marshal: %s", b)
	}
}
