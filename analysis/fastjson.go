package analysis

import (
	"encoding/json"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/ssestress/ssestress/internal/session"
)

// The two record types a report reads by the million (conns and errors)
// are flat JSON objects. encoding/json spends most of a report's time on
// them (reflection, a validation pass before the decoding pass), so they
// are read by a small scanner instead: one pass, no reflection, strings
// without escapes taken as they are. Anything it does not expect (an
// escape it does not handle, a malformed value) makes it give up on that
// record, which is then decoded by encoding/json as before; a test checks
// both give the same records. Values of keys a report does not read are
// skipped, not validated.

// errFastJSON means the scanner gave up; the caller falls back.
var errFastJSON = errors.New("not a flat JSON object the fast scanner reads")

// scanObject calls fn with each key of a JSON object and its raw value
// (strings with their quotes; nested objects and arrays whole).
func scanObject(data []byte, fn func(key, val []byte) bool) error {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errFastJSON
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return nil
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return errFastJSON
		}
		end, escaped := stringEnd(data, i)
		if end < 0 || escaped {
			return errFastJSON
		}
		key := data[i+1 : end-1]
		for _, c := range key {
			// encoding/json matches keys regardless of case (and folds a
			// few non-ASCII letters); the scanner matches exactly, so such
			// keys are left to encoding/json.
			if c >= 'A' && c <= 'Z' || c >= utf8.RuneSelf {
				return errFastJSON
			}
		}
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return errFastJSON
		}
		i = skipSpace(data, i+1)
		vEnd := valueEnd(data, i)
		if vEnd < 0 {
			return errFastJSON
		}
		if !fn(key, data[i:vEnd]) {
			return errFastJSON
		}
		i = skipSpace(data, vEnd)
		if i >= len(data) {
			return errFastJSON
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			if skipSpace(data, i+1) != len(data) {
				return errFastJSON
			}
			return nil
		default:
			return errFastJSON
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\n' || data[i] == '\t' || data[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the closing quote of the string at i,
// and whether it holds a backslash escape; -1 when it does not end.
func stringEnd(data []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '\\':
			escaped = true
			j++
		case c == '"':
			return j + 1, escaped
		case c < 0x20:
			return -1, false
		}
	}
	return -1, false
}

// valueEnd returns the index after the JSON value at i, or -1.
func valueEnd(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		end, _ := stringEnd(data, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, _ := stringEnd(data, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(data) && data[j] != ',' && data[j] != '}' && data[j] != ']' && data[j] != ' ' && data[j] != '\n' && data[j] != '\t' && data[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// jsonString reads a string value (null reads as "", as encoding/json
// leaves the field untouched); ok is false for what it leaves to
// encoding/json: surrogate escapes and invalid UTF-8.
func jsonString(v []byte) (string, bool) {
	if string(v) == "null" {
		return "", true
	}
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	body := v[1 : len(v)-1]
	ascii, escaped := true, false
	for _, c := range body {
		escaped = escaped || c == '\\'
		ascii = ascii && c < utf8.RuneSelf
	}
	// encoding/json replaces invalid UTF-8; leave such strings to it.
	if !ascii && !utf8.Valid(body) {
		return "", false
	}
	if !escaped {
		return string(body), true
	}
	return unescape(body)
}

// unescape decodes the escapes encoding/json writes: \" \\ \/ \b \f \n
// \r \t and \uXXXX outside the surrogate range (json.Marshal writes <, >
// and & as \u003c, \u003e, \u0026).
func unescape(body []byte) (string, bool) {
	out := make([]byte, 0, len(body))
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 >= len(body) {
			return "", false
		}
		i++
		switch body[i] {
		case '"', '\\', '/':
			out = append(out, body[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if i+4 >= len(body) {
				return "", false
			}
			var r rune
			for _, h := range body[i+1 : i+5] {
				switch {
				case h >= '0' && h <= '9':
					r = r<<4 | rune(h-'0')
				case h >= 'a' && h <= 'f':
					r = r<<4 | rune(h-'a'+10)
				case h >= 'A' && h <= 'F':
					r = r<<4 | rune(h-'A'+10)
				default:
					return "", false
				}
			}
			if r >= 0xD800 && r < 0xE000 {
				return "", false // a surrogate: left to encoding/json
			}
			out = utf8.AppendRune(out, r)
			i += 4
		default:
			return "", false
		}
	}
	return string(out), true
}

// jsonInt reads an integer value (no fraction, no exponent).
func jsonInt(v []byte) (int64, bool) {
	if string(v) == "null" {
		return 0, true
	}
	neg := len(v) > 0 && v[0] == '-'
	if neg {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// jsonTime reads a time as encoding/json writes it (RFC 3339).
func jsonTime(v []byte) (time.Time, bool) {
	s, ok := jsonString(v)
	if !ok {
		return time.Time{}, false
	}
	if s == "" && string(v) == "null" {
		return time.Time{}, true
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// decodeConnView decodes a conn record into v, fast or with encoding/json.
func decodeConnView(data []byte, v *connView) error { return decodeConn(data, v, true) }

// decodeConnViewNoAddrs is decodeConnView without the addresses, which only
// the proxies' hop records need.
func decodeConnViewNoAddrs(data []byte, v *connView) error { return decodeConn(data, v, false) }

func decodeConn(data []byte, v *connView, addrs bool) error {
	ok := true
	err := scanObject(data, func(key, val []byte) bool {
		var n int64
		switch string(key) {
		case "attempt":
			n, ok = jsonInt(val)
			v.Attempt = int(n)
		case "scenario":
			v.Scenario, ok = jsonString(val)
		case "group":
			v.Group, ok = jsonString(val)
		case "start":
			v.Start, ok = jsonTime(val)
		case "first_event":
			v.FirstEvent, ok = jsonTime(val)
		case "end":
			v.End, ok = jsonTime(val)
		case "events":
			v.Events, ok = jsonInt(val)
		case "comments":
			v.Comments, ok = jsonInt(val)
		case "max_gap_s":
			var d time.Duration
			d, ok = session.ParseSeconds(val)
			v.MaxGap = session.Seconds(d)
		case "end_class":
			v.EndClass, ok = jsonString(val)
		case "closed_by":
			v.ClosedBy, ok = jsonString(val)
		case "local_addr":
			if addrs {
				v.LocalAddr, ok = jsonString(val)
			}
		case "remote_addr":
			if addrs {
				v.RemoteAddr, ok = jsonString(val)
			}
		}
		return ok
	})
	if err != nil {
		*v = connView{}
		return json.Unmarshal(data, v)
	}
	return nil
}

// decodeErrorRecord decodes an error record into v, fast or with
// encoding/json.
func decodeErrorRecord(data []byte, v *session.ErrorRecord) error {
	ok := true
	err := scanObject(data, func(key, val []byte) bool {
		var n int64
		switch string(key) {
		case "time":
			v.Time, ok = jsonTime(val)
		case "source":
			v.Source, ok = jsonString(val)
		case "client_id":
			v.ClientID, ok = jsonString(val)
		case "proxy":
			v.Proxy, ok = jsonString(val)
		case "conn_id":
			v.ConnID, ok = jsonString(val)
		case "attempt":
			n, ok = jsonInt(val)
			v.Attempt = int(n)
		case "scenario":
			v.Scenario, ok = jsonString(val)
		case "group":
			v.Group, ok = jsonString(val)
		case "hop":
			v.Hop, ok = jsonString(val)
		case "class":
			v.Class, ok = jsonString(val)
		case "message":
			v.Message, ok = jsonString(val)
		case "local_addr":
			v.LocalAddr, ok = jsonString(val)
		case "remote_addr":
			v.RemoteAddr, ok = jsonString(val)
		case "age_s":
			var d time.Duration
			d, ok = session.ParseSeconds(val)
			v.Age = session.Seconds(d)
		case "idle_s":
			var d time.Duration
			d, ok = session.ParseSeconds(val)
			v.Idle = session.Seconds(d)
		case "events":
			v.Events, ok = jsonInt(val)
		case "last_event_id":
			v.LastEventID, ok = jsonString(val)
		}
		return ok
	})
	if err != nil {
		*v = session.ErrorRecord{}
		return json.Unmarshal(data, v)
	}
	return nil
}
