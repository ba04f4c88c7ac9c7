package procstat

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"
)

func skipIfNoProc(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
}

func TestSelfCountsFDsAndMemory(t *testing.T) {
	skipIfNoProc(t)
	before, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if before.RSS == 0 || before.RSSPeak < before.RSS || before.Threads < 1 || before.FDs < 3 {
		t.Fatalf("implausible reading %+v", before)
	}
	const extra = 20
	var files []*os.File
	for range extra {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	after, err := Self()
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	// Other goroutines of the test binary may open or close a descriptor
	// meanwhile; allow a little slack either way.
	if got := after.FDs - before.FDs; got < extra-2 || got > extra+2 {
		t.Fatalf("fds grew by %d after opening %d files (before %d, after %d)", got, extra, before.FDs, after.FDs)
	}
}

func TestReadMissingPid(t *testing.T) {
	skipIfNoProc(t)
	if _, err := Read(1 << 30); err == nil {
		t.Fatal("no error for a pid that cannot exist")
	}
	if _, err := TCPSockets(1 << 30); err == nil {
		t.Fatal("no error for a pid that cannot exist")
	}
}

// TestTCPSocketsSeesOwnConnections opens a listener and a connection on
// loopback and expects to find all three sockets with their states and
// exact addresses.
func TestTCPSocketsSeesOwnConnections(t *testing.T) {
	skipIfNoProc(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "tcp6" {
				addr = "[::1]:0"
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					accepted <- c
				}
				close(accepted)
			}()
			client, err := net.DialTimeout(network, ln.Addr().String(), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			var server net.Conn
			select {
			case server = <-accepted:
			case <-time.After(10 * time.Second):
				t.Fatal("accept timed out")
			}
			if server == nil {
				t.Fatal("accept failed")
			}
			defer server.Close()

			socks, err := TCPSockets(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			find := func(local, remote string, state string) {
				t.Helper()
				l := netip.MustParseAddrPort(local)
				for _, s := range socks {
					if s.Local == l && (remote == "" || s.Remote == netip.MustParseAddrPort(remote)) {
						if s.State != state {
							t.Errorf("socket %s: state %s, want %s", local, s.State, state)
						}
						if s.Inode == 0 {
							t.Errorf("socket %s: no inode", local)
						}
						return
					}
				}
				t.Errorf("socket %s → %s (%s) not found among %d sockets", local, remote, state, len(socks))
			}
			find(ln.Addr().String(), "", "LISTEN")
			find(client.LocalAddr().String(), client.RemoteAddr().String(), "ESTABLISHED")
			find(server.LocalAddr().String(), server.RemoteAddr().String(), "ESTABLISHED")

			states, err := TCPStates(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			if states["LISTEN"] < 1 || states["ESTABLISHED"] < 2 {
				t.Fatalf("states %v: want at least 1 LISTEN and 2 ESTABLISHED", states)
			}
		})
	}
}

func TestParseNetTCP(t *testing.T) {
	raw := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F9A 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D431 0100007F:1F9A 08 0000000A:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 20 4 30 10 -1
`)
	socks, err := parseNetTCP(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := []Socket{
		{Local: netip.MustParseAddrPort("127.0.0.1:8090"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: "LISTEN", Inode: 4242, RxQueue: 3},
		{Local: netip.MustParseAddrPort("127.0.0.1:54321"), Remote: netip.MustParseAddrPort("127.0.0.1:8090"), State: "CLOSE_WAIT", Inode: 4243, TxQueue: 10},
	}
	if len(socks) != len(want) {
		t.Fatalf("got %d sockets, want %d", len(socks), len(want))
	}
	for i := range want {
		if socks[i] != want[i] {
			t.Errorf("socket %d: got %+v, want %+v", i, socks[i], want[i])
		}
	}
	if _, err := parseNetTCP([]byte("header\n 0: garbage\n")); err == nil {
		t.Error("no error for a malformed line")
	}
}
