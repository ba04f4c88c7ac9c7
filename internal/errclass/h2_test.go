package errclass

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// GoAwayError has the shape of net/http's unexported http2GoAwayError,
// which has no As method to x/net's type: it is found by name and fields.
type GoAwayError struct {
	LastStreamID uint32
	ErrCode      uint32
	DebugData    string
}

func (e GoAwayError) Error() string { return "http2: server sent GOAWAY" }

func TestClassifyH2(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{http2.StreamError{StreamID: 1, Code: http2.ErrCodeInternal}, "H2_RST_STREAM:INTERNAL_ERROR"},
		{fmt.Errorf("read body: %w", http2.StreamError{StreamID: 3, Code: http2.ErrCodeCancel}), "H2_RST_STREAM:CANCEL"},
		{http2.StreamError{StreamID: 1, Code: http2.ErrCodeRefusedStream}, "H2_RST_STREAM:REFUSED_STREAM"},
		{http2.StreamError{StreamID: 1, Code: 0x1f}, "H2_RST_STREAM:0x1f"},
		{http2.GoAwayError{LastStreamID: 5, ErrCode: http2.ErrCodeNo}, "H2_GOAWAY:NO_ERROR"},
		{fmt.Errorf("x: %w", http2.GoAwayError{ErrCode: http2.ErrCodeEnhanceYourCalm}), "H2_GOAWAY:ENHANCE_YOUR_CALM"},
		{&GoAwayError{ErrCode: 0x2}, "H2_GOAWAY:INTERNAL_ERROR"},
		{errors.Join(errors.New("a"), GoAwayError{ErrCode: 0xd}), "H2_GOAWAY:HTTP_1_1_REQUIRED"},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
	if H2RSTStream(2) != H2RSTStreamPrefix+"INTERNAL_ERROR" || H2GoAway(0) != H2GoAwayPrefix+"NO_ERROR" {
		t.Fatal("class constructors disagree with the prefixes")
	}
	if !IsH2Cut("H2_RST_STREAM:CANCEL") || !IsH2Cut(H2GoAway(0)) || IsH2Cut(ECONNRESET) || IsH2Cut("HTTP_502") {
		t.Fatal("IsH2Cut")
	}
}

// h2Server is an https test server with HTTP/2 whose handler sends a few
// bytes and then does what end says.
func h2Server(t *testing.T, end func(w http.ResponseWriter, r *http.Request)) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: hello\n\n")
		w.(http.Flusher).Flush()
		end(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// readUntilError reads the body of url with client until it fails.
func readUntilError(t *testing.T, client *http.Client, url string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	if ctx.Err() != nil {
		t.Fatal("the stream did not fail in time")
	}
	return err
}

// TestClassifyH2RealStreams checks the classes of real HTTP/2 failures as
// both clients report them: net/http's bundled HTTP/2 (its own unexported
// error types) and golang.org/x/net/http2's Transport.
func TestClassifyH2RealStreams(t *testing.T) {
	// A handler that panics with ErrAbortHandler makes the server reset
	// the stream with INTERNAL_ERROR.
	reset := h2Server(t, func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })
	pool := reset.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	xnet := &http.Client{Transport: &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for name, client := range map[string]*http.Client{"net/http": reset.Client(), "x/net": xnet} {
		err := readUntilError(t, client, reset.URL)
		if got := Classify(err); got != "H2_RST_STREAM:INTERNAL_ERROR" {
			t.Errorf("%s: reset stream: %v → %q", name, err, got)
		}
	}

	// Graceful shutdown sends GOAWAY(NO_ERROR); closing the connection
	// while the stream is still open ends it with that GOAWAY.
	for _, name := range []string{"net/http", "x/net"} {
		started := make(chan struct{})
		var srv *httptest.Server
		srv = h2Server(t, func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-r.Context().Done()
		})
		client := srv.Client()
		if name == "x/net" {
			pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
			client = &http.Client{Transport: &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		}
		go func() {
			select {
			case <-started:
			case <-time.After(20 * time.Second):
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			srv.Config.Shutdown(ctx) // sends GOAWAY (asynchronously: hence the second), then waits for the stream in vain
			srv.CloseClientConnections()
		}()
		err := readUntilError(t, client, srv.URL)
		if got := Classify(err); got != "H2_GOAWAY:NO_ERROR" {
			t.Errorf("%s: GOAWAY then close: %v → %q", name, err, got)
		}
	}
}
