package proxy

import (
	"fmt"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// httpStatusKind is the fault kind http-status.
var httpStatusKind = &kind{
	summary: "answer a status instead of streaming", hops: []string{session.HopClient},
	keys: []keyDoc{{"code", "the status, 400-599 (default 502)"},
		{"timeout", "answer only if the upstream sends no response headers within timeout (0 = at once)"}},
	build: buildHTTPStatus,
}

type httpStatus struct {
	code    int
	timeout time.Duration
}

func buildHTTPStatus(fs FaultSpec, scale float64) (behaviour, error) {
	code := int64(502)
	if v, ok := fs.Params["code"]; ok {
		var err error
		if code, err = parseStatusCode(v); err != nil {
			return nil, err
		}
	}
	d, err := paramDuration(fs, "timeout", 0)
	if err != nil {
		return nil, err
	}
	return httpStatus{int(code), scaled(d, scale)}, nil
}

func parseStatusCode(v string) (int64, error) {
	var code int64
	if _, err := fmt.Sscanf(v, "%d", &code); err != nil || fmt.Sprint(code) != v || code < 400 || code > 599 {
		return 0, fmt.Errorf("code %q must be a status between 400 and 599", v)
	}
	return code, nil
}

func (s httpStatus) attach(a *attachment) any                   { return nil }
func (s httpStatus) respond() (code int, timeout time.Duration) { return s.code, s.timeout }
