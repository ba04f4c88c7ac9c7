package attribution

import (
	"strings"

	"github.com/ssestress/ssestress/internal/errclass"
)

// What a client error says happened to its connection: the one definition
// of a reset. A reset is a TCP RST segment; a FIN is a close, even one that
// cut a stream short.
const (
	// SeenReset: ECONNRESET or EPIPE. A RST segment reached the socket
	// (EPIPE: a write found the connection already reset).
	SeenReset = "reset"
	// SeenCut: UNEXPECTED_EOF. The connection was closed (FIN) in the
	// middle of the response: a close that cut the stream, not a reset.
	SeenCut = "cut"
	// SeenClose: EOF. The connection was closed (FIN) at an event boundary.
	SeenClose = "close"
	// SeenStreamReset: H2_RST_STREAM. One HTTP/2 stream was reset by a
	// RST_STREAM frame; the TCP connection lived on.
	SeenStreamReset = "stream reset"
	// SeenGoAway: H2_GOAWAY. The HTTP/2 connection was closed after a
	// GOAWAY frame while the stream was open.
	SeenGoAway = "goaway"
	// SeenRefused: ECONNREFUSED. The connection was never made.
	SeenRefused = "refused"
	// SeenTimeout: ETIMEDOUT. Nothing answered in time.
	SeenTimeout = "timeout"
	// SeenOther: any other class (HTTP statuses, bad content, TLS, ...):
	// the connection's ending says nothing about a reset.
	SeenOther = "other"
)

// Seen is what an error class says happened to the connection: one of the
// Seen constants.
func Seen(class string) string {
	switch {
	case class == errclass.ECONNRESET, class == errclass.EPIPE:
		return SeenReset
	case class == errclass.UnexpectedEOF:
		return SeenCut
	case class == errclass.EOF:
		return SeenClose
	case strings.HasPrefix(class, errclass.H2RSTStreamPrefix):
		return SeenStreamReset
	case strings.HasPrefix(class, errclass.H2GoAwayPrefix):
		return SeenGoAway
	case class == errclass.ECONNREFUSED:
		return SeenRefused
	case class == errclass.ETIMEDOUT:
		return SeenTimeout
	}
	return SeenOther
}

// IsReset reports whether class means a TCP reset reached the socket
// (ECONNRESET, EPIPE). UNEXPECTED_EOF is a cut (a FIN), not a reset.
func IsReset(class string) bool { return Seen(class) == SeenReset }

// IsCut reports whether class means the stream was ended by a close in the
// middle (UNEXPECTED_EOF) or an HTTP/2 stream reset or GOAWAY: streams
// broken without a TCP reset.
func IsCut(class string) bool {
	switch Seen(class) {
	case SeenCut, SeenStreamReset, SeenGoAway:
		return true
	}
	return false
}

// IsBroken reports whether class means a stream was broken: a reset or a
// cut. What the verdict explains before anything else.
func IsBroken(class string) bool { return IsReset(class) || IsCut(class) }

// seenNoun is the plural noun of what clients saw, for sentences: "resets",
// "cuts (FIN)".
func seenNoun(seen string, n int64) string {
	one := map[string]string{
		SeenReset:       "reset",
		SeenCut:         "cut (FIN inside the stream)",
		SeenClose:       "close (FIN)",
		SeenStreamReset: "HTTP/2 stream reset",
		SeenGoAway:      "HTTP/2 GOAWAY",
		SeenRefused:     "refused connection",
		SeenTimeout:     "timeout",
		SeenOther:       "error",
	}
	many := map[string]string{
		SeenReset:       "resets",
		SeenCut:         "cuts (FIN inside the stream)",
		SeenClose:       "closes (FIN)",
		SeenStreamReset: "HTTP/2 stream resets",
		SeenGoAway:      "HTTP/2 GOAWAYs",
		SeenRefused:     "refused connections",
		SeenTimeout:     "timeouts",
		SeenOther:       "errors",
	}
	if n == 1 {
		return one[seen]
	}
	return many[seen]
}
