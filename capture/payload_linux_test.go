//go:build linux

package capture

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/capture/internal/looptest"
)

// TestPcapHeadersOnly: by default a capture's pcap holds every header and
// no byte of any stream (a request carrying a token, events carrying a
// secret), while the flows read back from it still count every payload
// byte; with Payload the bytes are kept.
func TestPcapHeadersOnly(t *testing.T) {
	looptest.NeedRoot(t)
	const secret = "Bearer-tok3n-ZZZ-never-in-a-pcap"
	for _, payload := range []bool{false, true} {
		dir := t.TempDir()
		pcap := filepath.Join(dir, "trace.pcap")
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		c, err := Start(context.Background(), Config{Iface: "lo", Ports: []int{port}, Out: pcap, Payload: payload})
		if err != nil {
			ln.Close()
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() {
			sc, err := ln.Accept()
			if err != nil {
				served <- err
				return
			}
			defer sc.Close()
			buf := make([]byte, 4096)
			sc.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := sc.Read(buf); err != nil {
				served <- err
				return
			}
			_, err = io.WriteString(sc, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: "+strings.Repeat(secret, 100)+"\n\n")
			served <- err
		}()
		cc, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		request := "GET /stream?symbols=AAPL&token=" + secret + " HTTP/1.1\r\nHost: x\r\nAuthorization: " + secret + "\r\n\r\n"
		io.WriteString(cc, request)
		cc.SetDeadline(time.Now().Add(10 * time.Second))
		got, _ := io.ReadAll(io.LimitReader(cc, int64(len(secret)*100)))
		cc.Close()
		if err := <-served; err != nil {
			t.Fatal(err)
		}
		ln.Close()
		if !bytes.Contains(got, []byte(secret)) {
			t.Fatalf("the client did not get the events")
		}
		time.Sleep(200 * time.Millisecond) // the last packets reach the socket
		if _, err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(pcap)
		if err != nil {
			t.Fatal(err)
		}
		if has := bytes.Contains(raw, []byte(secret)); has != payload {
			t.Errorf("payload %v: the pcap holds the secret: %v (%d bytes)", payload, has, len(raw))
		}
		fr, err := ReadFile(pcap, []int{port})
		if err != nil {
			t.Fatal(err)
		}
		var down int64
		for _, f := range fr.Flows {
			down += f.FromListener.Bytes
		}
		if want := int64(len(secret) * 100); down < want {
			t.Errorf("payload %v: flows read back count %d bytes from the server, want at least %d", payload, down, want)
		}
	}
}
