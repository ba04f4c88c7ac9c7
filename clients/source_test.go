package clients

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseSourceAddrs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		err  string
	}{
		{"127.0.0.2-127.0.0.4", "127.0.0.2 127.0.0.3 127.0.0.4", ""},
		{"127.0.0.2, 127.0.0.9,127.0.0.2", "127.0.0.2 127.0.0.9", ""},
		{"10.0.0.254-10.0.1.1", "10.0.0.254 10.0.0.255 10.0.1.0 10.0.1.1", ""},
		{"::1", "::1", ""},
		{"127.0.0.5-127.0.0.3", "", `"127.0.0.5-127.0.0.3" is not a range of addresses of one family from low to high`},
		{"localhost", "", `"localhost" is not an IP address or a range such as 127.0.0.2-127.0.0.9`},
		{"127.0.0.1,::1", "", "127.0.0.1 and ::1 are of different families (IPv4 and IPv6 do not mix)"},
		{"10.0.0.0-10.255.0.0", "", "more than 4096 source addresses"},
		{" , ", "", "no address given"},
	} {
		got, err := ParseSourceAddrs(tc.in)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		var s []string
		for _, a := range got {
			s = append(s, a.String())
		}
		if strings.Join(s, " ") != tc.want || msg != tc.err {
			t.Errorf("ParseSourceAddrs(%q) = %v, %q; want %q, %q", tc.in, s, msg, tc.want, tc.err)
		}
	}
}

func TestCheckSourceAddrs(t *testing.T) {
	if err := CheckSourceAddrs([]netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.7")}); err != nil {
		t.Fatalf("loopback addresses refused: %v", err)
	}
	// 192.0.2.0/24 is TEST-NET-1: never configured on a host.
	err := CheckSourceAddrs([]netip.Addr{netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("192.0.2.77")})
	if err == nil || !strings.HasPrefix(err.Error(), "source address 192.0.2.77 is not an address of this host (bind: cannot assign requested address)") {
		t.Fatalf("err = %v", err)
	}
}

// TestSourceRoundRobin: six connections over three loopback source
// addresses arrive at a real server from those addresses, two from each,
// and ConnInfo reports them; for HTTP/1.1 and for HTTP/2 (h2c, its shared
// connection closed between streams so that each dials).
func TestSourceRoundRobin(t *testing.T) {
	addrs, err := ParseSourceAddrs("127.0.0.2-127.0.0.4")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		mu.Lock()
		seen[host]++
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("data: hi\n\n"))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	for _, tr := range []Transport{&HTTP1{Source: NewSourceAddrs(addrs)}, &HTTP2{Source: NewSourceAddrs(addrs)}} {
		local := map[string]int{}
		h2, _ := tr.(*HTTP2)
		for range 6 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ln.Addr().String()+"/stream", nil)
			var info ConnInfo
			resp, err := tr.Open(ctx, req, &info)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			resp.Body.Close()
			cancel()
			if h2 != nil {
				h2.CloseIdleConnections()
			}
			host, _, _ := net.SplitHostPort(info.LocalAddr)
			local[host]++
		}
		for _, a := range addrs {
			if local[a.String()] != 2 {
				t.Fatalf("local addresses %v, want two streams from each of %v", local, addrs)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range addrs {
		if seen[a.String()] != 4 {
			t.Fatalf("the server saw %v, want four connections (two per transport) from each of %v", seen, addrs)
		}
	}
}
