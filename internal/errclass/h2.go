package errclass

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"golang.org/x/net/http2"
)

// The HTTP/2 classes: what a TCP reset becomes behind a CDN or any HTTP/2
// hop. The code is the RFC 9113 §7 name of the frame's error code
// ("H2_RST_STREAM:INTERNAL_ERROR", "H2_GOAWAY:NO_ERROR"); a code outside
// the RFC's table is written in hex ("H2_RST_STREAM:0x1f"). Names, not
// numbers, because they are what proxies, CDNs and browsers log.
const (
	// H2RSTStreamPrefix: the peer reset one stream (RST_STREAM frame); the
	// connection and its other streams go on.
	H2RSTStreamPrefix = "H2_RST_STREAM:"
	// H2GoAwayPrefix: the peer sent GOAWAY and then closed the connection
	// while the stream was open; every stream on it ended.
	H2GoAwayPrefix = "H2_GOAWAY:"
)

// h2CodeNames are RFC 9113 §7's error code names.
var h2CodeNames = [...]string{
	"NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
	"SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM",
	"CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
	"INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
}

// H2Code names an HTTP/2 error code as the classes do.
func H2Code(code uint32) string {
	if int(code) < len(h2CodeNames) {
		return h2CodeNames[code]
	}
	return fmt.Sprintf("0x%x", code)
}

// H2RSTStream is the class of a stream reset with code.
func H2RSTStream(code uint32) string { return H2RSTStreamPrefix + H2Code(code) }

// H2GoAway is the class of a connection ended by GOAWAY with code.
func H2GoAway(code uint32) string { return H2GoAwayPrefix + H2Code(code) }

// IsH2Cut reports whether class is an HTTP/2 stream reset or GOAWAY: what
// a TCP reset becomes when an HTTP/2 hop (a CDN, a proxy) sits between the
// client and the cut, so reports count it beside ECONNRESET.
func IsH2Cut(class string) bool {
	return strings.HasPrefix(class, H2RSTStreamPrefix) || strings.HasPrefix(class, H2GoAwayPrefix)
}

// classifyH2 names an HTTP/2 stream reset or GOAWAY in err's chain, or
// returns "".
//
// golang.org/x/net/http2 returns StreamError and GoAwayError values.
// net/http's bundled copy has its own unexported types: its stream error
// converts itself to x/net's through an As method, its GOAWAY error does
// not, so those (and any later copy with the same shape, such as Go
// 1.27's net/http/internal/http2) are recognised by their type name and
// read by reflection, never by matching the message.
func classifyH2(err error) string {
	var se http2.StreamError
	if errors.As(err, &se) {
		return H2RSTStream(uint32(se.Code))
	}
	var ge http2.GoAwayError
	if errors.As(err, &ge) {
		return H2GoAway(uint32(ge.ErrCode))
	}
	class := ""
	walk(err, func(e error) bool {
		v := reflect.ValueOf(e)
		for v.Kind() == reflect.Pointer && !v.IsNil() {
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return false
		}
		switch v.Type().Name() {
		case "http2GoAwayError", "GoAwayError":
			if code, ok := uintField(v, "ErrCode"); ok {
				class = H2GoAway(code)
			}
		case "http2StreamError", "StreamError":
			if code, ok := uintField(v, "Code"); ok {
				class = H2RSTStream(code)
			}
		}
		return class != ""
	})
	return class
}

// uintField reads the unsigned integer field name of struct v.
func uintField(v reflect.Value, name string) (uint32, bool) {
	f := v.FieldByName(name)
	if !f.IsValid() {
		return 0, false
	}
	switch f.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return uint32(f.Uint()), true
	}
	return 0, false
}

// walk calls fn on err and every error it wraps, depth first, until fn
// returns true.
func walk(err error, fn func(error) bool) bool {
	if err == nil {
		return false
	}
	if fn(err) {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return walk(u.Unwrap(), fn)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if walk(e, fn) {
				return true
			}
		}
	}
	return false
}
