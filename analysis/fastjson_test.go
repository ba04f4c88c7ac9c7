package analysis

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// randomText draws strings that exercise the scanner: plain, with quotes
// and backslashes, unicode, invalid UTF-8, control characters.
func randomText(rng *rand.Rand) string {
	pieces := []string{"", "ECONNRESET", "read tcp 127.0.0.1:4123->127.0.0.1:8090: read: connection reset by peer",
		`say "hi"`, `back\slash`, "tab\there", "ünïcødé ✓", "\xff\xfe bad utf8", "line\nbreak", "</script>", "AAPL,MSFT"}
	return pieces[rng.IntN(len(pieces))] + pieces[rng.IntN(len(pieces))]
}

func randomTime(rng *rand.Rand) time.Time {
	switch rng.IntN(4) {
	case 0:
		return time.Time{}
	case 1:
		return time.Unix(rng.Int64N(2e9), rng.Int64N(1e9)).UTC()
	case 2:
		return time.Unix(rng.Int64N(2e9), 0).In(time.FixedZone("", 3600*rng.IntN(12)))
	}
	return time.Unix(rng.Int64N(2e9), rng.Int64N(1e9)).In(time.FixedZone("", -1800))
}

// TestFastDecodeMatchesJSON: for random records, the fast decoders give
// exactly what encoding/json gives.
func TestFastDecodeMatchesJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		er := session.ErrorRecord{
			Time: randomTime(rng), Source: randomText(rng), ClientID: randomText(rng), Attempt: rng.IntN(1 << 20),
			Scenario: randomText(rng), Group: randomText(rng), Hop: randomText(rng), Class: randomText(rng),
			Message: randomText(rng), LocalAddr: randomText(rng), RemoteAddr: randomText(rng),
			Age: session.Seconds(rng.Int64() - rng.Int64()/2), Idle: session.Seconds(time.Duration(rng.Int64N(1e12))),
			Events: rng.Int64N(1e9) - 5, LastEventID: randomText(rng),
		}
		data, _ := json.Marshal(er)
		var want, got session.ErrorRecord
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		if err := decodeErrorRecord(data, &got); err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		if !sameRecord(want, got) {
			t.Fatalf("record %d %s\nfast %+v\njson %+v", i, data, got, want)
		}

		c := session.ConnRecord{
			ClientID: randomText(rng), Attempt: rng.IntN(100), Scenario: randomText(rng), Group: randomText(rng), URL: randomText(rng),
			Start: randomTime(rng), Connected: randomTime(rng), FirstEvent: randomTime(rng), End: randomTime(rng),
			Status: 200, Events: rng.Int64N(1e6), Comments: rng.Int64N(1e3), MaxGap: session.Seconds(time.Duration(rng.Int64N(1e12))),
			EndClass: randomText(rng), EndMessage: randomText(rng), ClosedBy: randomText(rng),
		}
		data, _ = json.Marshal(c)
		var wantC, gotC connView
		if err := json.Unmarshal(data, &wantC); err != nil {
			t.Fatal(err)
		}
		if err := decodeConnView(data, &gotC); err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		if !sameRecord(wantC, gotC) {
			t.Fatalf("conn %d %s\nfast %+v\njson %+v", i, data, gotC, wantC)
		}
	}
}

// sameRecord compares records whose times may differ only in how the same
// instant and offset are represented.
func sameRecord(a, b any) bool {
	return fmt.Sprintf("%#v", normTimes(a)) == fmt.Sprintf("%#v", normTimes(b))
}

func normTimes(v any) any {
	rv := reflect.ValueOf(v)
	out := reflect.New(rv.Type()).Elem()
	out.Set(rv)
	for i := range out.NumField() {
		if tm, ok := out.Field(i).Interface().(time.Time); ok {
			_, off := tm.Zone()
			out.Field(i).Set(reflect.ValueOf(time.Unix(0, tm.UnixNano()).In(time.FixedZone("", off))))
			if tm.IsZero() {
				out.Field(i).Set(reflect.ValueOf(time.Time{}))
			}
		}
	}
	return out.Interface()
}

// FuzzDecodeErrorRecord: whenever encoding/json reads the input, the fast
// decoder reads the same record. (Where encoding/json refuses the input,
// the fast decoder may still read it: it does not validate the values of
// keys it skips.)
func FuzzDecodeErrorRecord(f *testing.F) {
	seed, _ := json.Marshal(session.ErrorRecord{Time: time.Unix(1700000000, 5).UTC(), Class: "ECONNRESET", Message: `a "b"`, Age: 5})
	f.Add(seed)
	f.Add([]byte(`{"Class":"EOF","time":null,"age_ns":1e3}`))
	f.Add([]byte(`{"class":"EOF","extra":{"a":[1,2,{"b":"}"}]},"events":-3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var want session.ErrorRecord
		if json.Unmarshal(data, &want) != nil {
			return
		}
		var got session.ErrorRecord
		if err := decodeErrorRecord(data, &got); err != nil {
			t.Fatalf("encoding/json reads %q, the fast decoder fails: %v", data, err)
		}
		if !sameRecord(want, got) {
			t.Fatalf("%q:\nfast %+v\njson %+v", data, got, want)
		}
	})
}
