package session

import (
	"fmt"
	"os"
	"strings"
)

// Reader returns a Reader over the Writer's open file, for a process that
// must read what it is writing (a run's live /report): bbolt's lock keeps a
// second open of the same file waiting, even in the same process. It sees
// what is committed (at most FlushInterval behind the Puts). Its Close
// does nothing; the file closes with the Writer, and the Reader must not
// be used after that.
func (w *Writer) Reader() *Reader {
	return &Reader{db: w.db, path: w.path, version: SchemaVersion, borrowed: true}
}

// LiveSuffix names the file beside a session file that holds the address
// of the live view (--http) of the process writing it, so that a reader
// refused with ErrInUse can point at the live view instead.
const LiveSuffix = ".live"

// WriteLiveURL records liveURL beside the session file at path. The
// returned function removes it; call it when the live view stops.
func WriteLiveURL(path, liveURL string) (remove func(), err error) {
	hint := path + LiveSuffix
	if err := os.WriteFile(hint, []byte(liveURL+"\n"), 0o644); err != nil {
		return func() {}, fmt.Errorf("live view hint: %w", err)
	}
	return func() { os.Remove(hint) }, nil
}

// LiveURL is the live view address recorded beside the session file at
// path, or "" when there is none. It is only meaningful while the file is
// in use: a process killed with SIGKILL leaves a stale one behind.
func LiveURL(path string) string {
	raw, err := os.ReadFile(path + LiveSuffix)
	if err != nil || len(raw) > 512 {
		return ""
	}
	u := strings.TrimSpace(string(raw))
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return ""
	}
	return u
}

// inUseError is ErrInUse for path, naming the live view when one is recorded.
func inUseError(path string) error {
	if u := LiveURL(path); u != "" {
		return fmt.Errorf("%s %w; its live view serves the same report: %s/report (add ?format=json, markdown, csv or html), %s/metrics", path, ErrInUse, u, u)
	}
	return fmt.Errorf("%s %w (ssestress report and recordings read what it has committed so far)", path, ErrInUse)
}
