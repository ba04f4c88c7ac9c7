package clients

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
)

// DefaultMaxHeaderBytes bounds a response's status line and headers when
// HTTP1.MaxHeaderBytes is zero: net/http's own server default. http.ReadResponse
// has no bound of its own, so a server that sends an endless header line
// would otherwise make a client hold everything until the header timeout.
const DefaultMaxHeaderBytes = 1 << 20

// HeaderTooLongError is a response whose headers did not end within the
// bound.
type HeaderTooLongError struct{ Max int }

func (e *HeaderTooLongError) Error() string {
	return fmt.Sprintf("response headers longer than %d bytes", e.Max)
}

// ErrClass names the error in the ssestress error taxonomy.
func (e *HeaderTooLongError) ErrClass() string { return errclass.HeaderTooLong }

// BadResponseError is a response that is not HTTP: a malformed status
// line, header or chunk framing (binary garbage, a TLS server spoken to
// in plain text, a proxy's own protocol).
type BadResponseError struct{ Err error }

func (e *BadResponseError) Error() string    { return "malformed response: " + e.Err.Error() }
func (e *BadResponseError) Unwrap() error    { return e.Err }
func (e *BadResponseError) ErrClass() string { return errclass.BadResponse }

// badResponse wraps err as a BadResponseError when the taxonomy has no
// better name for it (net/http reports protocol violations as plain
// errors); network errors, timeouts, ends of stream and reads after the
// client closed the connection keep their class.
func badResponse(err error) error {
	if err == nil || errclass.Classify(err) != errclass.Other || errors.Is(err, errConnClosed) || errors.Is(err, net.ErrClosed) {
		return err
	}
	return &BadResponseError{Err: err}
}

// headerLimit is the reader under the response's bufio.Reader while the
// headers are read: past max bytes it fails with a HeaderTooLongError.
// Once the headers are in, off lifts the bound for the body.
type headerLimit struct {
	r    io.Reader
	left int // bytes still allowed; <0: no bound
	max  int
}

// newHeaderLimit allows max header bytes plus one buffer of read-ahead
// (the bufio.Reader may read the first body bytes with the headers).
func newHeaderLimit(r io.Reader, max, readAhead int) *headerLimit {
	if max <= 0 {
		max = DefaultMaxHeaderBytes
	}
	return &headerLimit{r: r, left: max + readAhead, max: max}
}

func (l *headerLimit) Read(p []byte) (int, error) {
	if l.left < 0 {
		return l.r.Read(p)
	}
	if l.left == 0 {
		return 0, &HeaderTooLongError{Max: l.max}
	}
	if len(p) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= n
	return n, err
}

// off lifts the bound: the headers are in.
func (l *headerLimit) off() { l.left = -1 }

// Local resource exhaustion (out of file descriptors, out of ephemeral
// ports) is not the server's doing: retrying at the server's pace (an
// EventSource honours retry: 0) would spin a core and fill the session file
// with failures. A stream that fails this way waits at least
// localBackoff(n) after the n-th consecutive such failure.
const (
	minLocalBackoff = 100 * time.Millisecond
	maxLocalBackoff = 5 * time.Second
)

// localBackoff is the least wait before a reconnect after failures
// consecutive local failures: 100 ms doubling up to 5 s, with jitter so
// thousands of streams that ran out together do not retry together.
var localBackoff = Backoff{Max: maxLocalBackoff, Jitter: 0.5}

// isLocalExhaustion reports whether err is the client host running out of
// a resource (EMFILE/ENFILE, EADDRNOTAVAIL).
func isLocalExhaustion(err error) bool {
	switch errclass.Classify(err) {
	case errclass.EMFILE, errclass.EADDRNOTAVAIL:
		return true
	}
	return false
}
