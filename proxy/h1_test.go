package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestH1Server: the proxy's own HTTP/1.1 server forwards a request body,
// answers HEAD without a body, gives a short answer a Content-Length,
// keeps the connection for the next request, and refuses a request head
// past its bound with 431.
func TestH1Server(t *testing.T) {
	srv := scriptHandler(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		io.WriteString(w, "got "+string(body))
	})
	p := startProxy(t, Config{Upstream: srv})
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "got hello" || resp.ContentLength != int64(len("got hello")) || resp.Close {
		t.Fatalf("POST: %d %q length %d close %v", resp.StatusCode, body, resp.ContentLength, resp.Close)
	}
	// The same connection, a HEAD.
	io.WriteString(c, "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
	req, _ := http.NewRequest(http.MethodHead, "/h", nil)
	resp, err = http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("X-Method") != "HEAD" {
		t.Fatalf("HEAD: %d %v", resp.StatusCode, resp.Header)
	}
	// A head past 1 MiB.
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c2, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 2<<20)+"\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("big head: %v %v", resp, err)
	}
}
