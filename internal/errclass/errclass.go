// Package errclass maps Go errors onto the stable error taxonomy that
// production logs use (ECONNRESET, EOF, HTTP_502, ...). Every producer of the
// session file classifies through Classify so that the same failure gets the
// same name whichever part of ssestress saw it.
package errclass

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
)

// The classes. HTTP statuses are "HTTP_<code>" (see HTTP); HTTP/2 stream
// resets and GOAWAYs are "H2_RST_STREAM:<code>" and "H2_GOAWAY:<code>"
// (see H2RSTStream, H2GoAway).
const (
	ECONNRESET     = "ECONNRESET"     // the peer (or something on the path) sent a TCP RST
	EPIPE          = "EPIPE"          // write after the peer closed
	ECONNREFUSED   = "ECONNREFUSED"   // nothing listening, or refused with RST on SYN
	ETIMEDOUT      = "ETIMEDOUT"      // a connect, read or idle deadline passed
	EOF            = "EOF"            // clean end of the stream by the server
	UnexpectedEOF  = "UNEXPECTED_EOF" // stream cut in the middle of a chunk or response
	BadContentType = "BAD_CONTENT_TYPE"
	LineTooLong    = "LINE_TOO_LONG"
	EventTooLong   = "EVENT_TOO_LONG"  // one event's data past the client's bound (sse.DefaultMaxEvent)
	HeaderTooLong  = "HEADER_TOO_LONG" // response headers past the client's bound, or never ending
	BadResponse    = "BAD_RESPONSE"    // not HTTP: a malformed status line, header or chunk framing
	MemoryBudget   = "MEMORY_BUDGET"   // ended by this process to stay within its memory budget (--max-memory)
	TLS            = "TLS"
	DNS            = "DNS"
	EMFILE         = "EMFILE" // out of file descriptors (EMFILE or ENFILE)
	EADDRNOTAVAIL  = "EADDRNOTAVAIL"
	Other          = "OTHER"
)

// Classer is implemented by errors that know their class.
type Classer interface{ ErrClass() string }

// HTTP returns the class of an HTTP status: "HTTP_502".
func HTTP(code int) string { return "HTTP_" + strconv.Itoa(code) }

// StatusError is a response whose status is not 200.
type StatusError struct{ Code int }

func (e *StatusError) Error() string    { return fmt.Sprintf("HTTP status %d", e.Code) }
func (e *StatusError) ErrClass() string { return HTTP(e.Code) }

// ContentTypeError is a 200 response that is not text/event-stream.
type ContentTypeError struct{ Got string }

func (e *ContentTypeError) Error() string {
	return fmt.Sprintf("content type %q is not text/event-stream", e.Got)
}
func (e *ContentTypeError) ErrClass() string { return BadContentType }

// Classify names err. A nil error has no class ("").
func Classify(err error) string {
	if err == nil {
		return ""
	}
	var c Classer
	if errors.As(err, &c) {
		return c.ErrClass()
	}
	if class := classifyH2(err); class != "" {
		return class
	}
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED):
		return ECONNRESET
	case errors.Is(err, syscall.EPIPE):
		return EPIPE
	case errors.Is(err, syscall.ECONNREFUSED):
		return ECONNREFUSED
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return EMFILE
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return EADDRNOTAVAIL
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, context.DeadlineExceeded):
		return ETIMEDOUT
	case errors.Is(err, io.ErrUnexpectedEOF):
		return UnexpectedEOF
	case errors.Is(err, io.EOF):
		return EOF
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return DNS
	}
	if isTLS(err) {
		return TLS
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ETIMEDOUT
	}
	return Other
}

func isTLS(err error) bool {
	var (
		rh   tls.RecordHeaderError
		alt  tls.AlertError
		cv   *tls.CertificateVerificationError
		ua   x509.UnknownAuthorityError
		hn   x509.HostnameError
		ci   x509.CertificateInvalidError
		echr *tls.ECHRejectionError
	)
	if errors.As(err, &rh) || errors.As(err, &alt) || errors.As(err, &cv) ||
		errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &echr) {
		return true
	}
	// An alert from the peer ("remote error: tls: bad certificate") is an
	// OpError whose Op crypto/tls sets to "remote error"; its alert type
	// is unexported.
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}
