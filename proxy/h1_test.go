package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
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

// TestFloodReadsWholeWrites: a stream carrying a flood keeps the large
// copy buffer, so each write of the server reaches the client as one
// chunk, not split between the small buffer and the large one.
func TestFloodReadsWholeWrites(t *testing.T) {
	const writes, size = 20, 8 << 10
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		payload := []byte(strings.Repeat(": "+strings.Repeat("x", 125)+"\n", size/128))
		framed := append(append([]byte(fmt.Sprintf("%x\r\n", len(payload))), payload...), "\r\n"...)
		for i := 0; i < writes; i++ {
			if _, err := c.Write(framed); err != nil {
				return
			}
			select { // the next write once the client has this one
			case <-received:
			case <-time.After(10 * time.Second):
				return
			}
		}
	}()
	p := startProxy(t, Config{Upstream: "http://" + ln.Addr().String()})
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	chunks := 0
	for i := 0; i < writes; i++ {
		for got := 0; got < size; {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			n, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
			if err != nil || n == 0 {
				t.Fatalf("write %d: chunk size line %q", i, line)
			}
			if _, err := io.CopyN(io.Discard, br, n+2); err != nil {
				t.Fatal(err)
			}
			chunks++
			got += int(n)
		}
		received <- struct{}{}
	}
	// The first writes fill the small buffer before the large one is
	// taken, and a write read while it still arrives is cut (26 chunks in
	// all when this test was written), where giving the large buffer back after every read that
	// did not fill it made three of each write (small buffer, its chunk
	// header taken: not full; small again, full; the rest in the large).
	t.Logf("%d writes of %d bytes reached the client in %d chunks", writes, size, chunks)
	if chunks > writes*3/2 {
		t.Fatalf("%d writes of %d bytes reached the client in %d chunks, want at most %d", writes, size, chunks, writes*3/2)
	}
}
