package analysis

import "testing"

// TestIsResetClass: HTTP/2 stream resets and GOAWAYs are explained beside
// TCP resets; clean ends and HTTP statuses are not resets.
func TestIsResetClass(t *testing.T) {
	for class, want := range map[string]bool{
		"ECONNRESET": true, "UNEXPECTED_EOF": true, "EPIPE": true,
		"H2_RST_STREAM:CANCEL": true, "H2_GOAWAY:NO_ERROR": true,
		"EOF": false, "HTTP_502": false, "ETIMEDOUT": false, "": false,
	} {
		if got := isResetClass(class); got != want {
			t.Errorf("isResetClass(%q) = %v, want %v", class, got, want)
		}
	}
}
