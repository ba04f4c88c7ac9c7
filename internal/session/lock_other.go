//go:build !unix

package session

// heldForWriting is not known without a non-blocking lock probe: Open's
// own wait for the lock decides.
func heldForWriting(string) bool { return false }
