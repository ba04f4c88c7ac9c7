package errclass

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"
)

type lineErr struct{}

func (lineErr) Error() string    { return "line too long" }
func (lineErr) ErrClass() string { return LineTooLong }

func TestClassify(t *testing.T) {
	opErr := func(errno error) error {
		return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", errno)}
	}
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{opErr(syscall.ECONNRESET), ECONNRESET},
		{fmt.Errorf("stream: %w", opErr(syscall.ECONNRESET)), ECONNRESET},
		{opErr(syscall.EPIPE), EPIPE},
		{opErr(syscall.ECONNREFUSED), ECONNREFUSED},
		{opErr(syscall.ETIMEDOUT), ETIMEDOUT},
		{opErr(syscall.EMFILE), EMFILE},
		{opErr(syscall.ENFILE), EMFILE},
		{opErr(syscall.EADDRNOTAVAIL), EADDRNOTAVAIL},
		{os.ErrDeadlineExceeded, ETIMEDOUT},
		{context.DeadlineExceeded, ETIMEDOUT},
		{io.EOF, EOF},
		{io.ErrUnexpectedEOF, UnexpectedEOF},
		{fmt.Errorf("body: %w", io.ErrUnexpectedEOF), UnexpectedEOF},
		{&StatusError{Code: 502}, "HTTP_502"},
		{fmt.Errorf("connect: %w", &StatusError{Code: 504}), "HTTP_504"},
		{&ContentTypeError{Got: "text/html"}, BadContentType},
		{lineErr{}, LineTooLong},
		{&net.DNSError{Err: "no such host", Name: "x.invalid"}, DNS},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, TLS},
		{errors.New("something else"), Other},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestClassifyRealSockets checks the classes of errors that real loopback
// sockets produce, not only hand-built ones.
func TestClassifyRealSockets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	// The RST may already have arrived when connect(2) reports back: the
	// dial itself then fails with ECONNRESET, which is the same class.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if got := Classify(err); got != ECONNRESET {
		t.Errorf("read after RST: %v → %q, want ECONNRESET", err, got)
	}
	ln.Close()
	_, err = net.DialTimeout("tcp", addr, 5*time.Second)
	if got := Classify(err); got != ECONNREFUSED {
		t.Errorf("dial closed port: %v → %q, want ECONNREFUSED", err, got)
	}
}

// TestClassifyRemoteTLSAlert: an alert sent by the peer (here: no common
// ALPN protocol) is TLS, though crypto/tls reports it as a plain OpError.
func TestClassifyRemoteTLSAlert(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	srv.StartTLS()                                   // offers http/1.1 only
	defer srv.Close()
	c, err := net.DialTimeout("tcp", srv.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	err = tc.Handshake()
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" {
		t.Fatalf("handshake: %v, want a remote alert", err)
	}
	if got := Classify(err); got != TLS {
		t.Fatalf("%v → %q, want TLS", err, got)
	}
}
