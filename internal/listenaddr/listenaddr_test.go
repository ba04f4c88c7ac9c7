package listenaddr

import (
	"net"
	"testing"
)

func TestLoopback(t *testing.T) {
	for _, tc := range []struct{ in, def, want string }{
		{"", "127.0.0.1:8090", "127.0.0.1:8090"},
		{"8080", "", "127.0.0.1:8080"},
		{":8080", "", "127.0.0.1:8080"},
		{" :0 ", "", "127.0.0.1:0"},
		{"0.0.0.0:8080", "", "0.0.0.0:8080"},
		{"[::]:8080", "", "[::]:8080"},
		{"[::1]:8080", "", "[::1]:8080"},
		{"localhost:8080", "", "localhost:8080"},
	} {
		if got := Loopback(tc.in, tc.def); got != tc.want {
			t.Errorf("Loopback(%q, %q) = %q, want %q", tc.in, tc.def, got, tc.want)
		}
	}
}

// TestBarePortListensOnLoopback listens on what a bare port becomes and
// checks the socket's address: 127.0.0.1, not every interface.
func TestBarePortListensOnLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", Loopback(":0", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if a := ln.Addr().(*net.TCPAddr); !a.IP.IsLoopback() {
		t.Fatalf("bound %v", a)
	}
	if !IsLoopback(ln.Addr().String()) || IsLoopback("0.0.0.0:1") || IsLoopback(":1") || !IsLoopback("localhost:1") {
		t.Fatal("IsLoopback")
	}
}
