package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ssestress/ssestress/internal/procstat"
)

// findToxiproxy returns the toxiproxy-server binary to compare with:
// given, the one named (checked later, when it runs); "-", none; empty, the
// one in PATH if any.
func findToxiproxy(given string) string {
	switch given {
	case "-":
		return ""
	case "":
		p, err := exec.LookPath("toxiproxy-server")
		if err != nil {
			return ""
		}
		return p
	}
	return given
}

// startToxiproxy runs toxiproxy-server with one proxy to server, no
// toxic: Toxiproxy's own floor, measured in the same run as ours.
func (s *suite) startToxiproxy(ctx context.Context, server string) (*hop, error) {
	up, err := url.Parse(server)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close() // toxiproxy-server takes a port number, not a listener
	cmd := exec.CommandContext(ctx, s.toxi, "-host", "127.0.0.1", "-port", port)
	stderr := &tailBuffer{max: 2048}
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("toxiproxy-server %s: %w", s.toxi, err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-waited
		}
	}
	api := "http://127.0.0.1:" + port
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := hc.Get(api + "/version")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-waited:
			return nil, fmt.Errorf("toxiproxy-server exited: %s", stderr.lastLine())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("toxiproxy-server API on %s did not answer within 15s", api)
		}
		time.Sleep(50 * time.Millisecond)
	}
	body, _ := json.Marshal(map[string]any{"name": "ssestress-bench", "listen": "127.0.0.1:0", "upstream": up.Host, "enabled": true})
	resp, err := hc.Post(api+"/proxies", "application/json", bytes.NewReader(body))
	if err != nil {
		stop()
		return nil, fmt.Errorf("toxiproxy: create proxy: %w", err)
	}
	defer resp.Body.Close()
	var created struct {
		Listen string `json:"listen"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 || json.Unmarshal(raw, &created) != nil || created.Listen == "" {
		stop()
		return nil, fmt.Errorf("toxiproxy: create proxy: %s %s", resp.Status, strings.TrimSpace(string(raw)))
	}
	pid := cmd.Process.Pid
	return &hop{url: "http://" + created.Listen, stop: stop, usage: func() (Usage, error) { return readProc(pid) }}, nil
}

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on
// every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// readProc reads another process's CPU time and memory from /proc.
func readProc(pid int) (Usage, error) {
	u := Usage{PID: pid}
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return u, err
	}
	// Fields after the command name (which may hold spaces): state is the
	// first, utime the 12th and stime the 13th.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return u, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return u, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	u.CPU = time.Duration(ut+st) * clockTick
	if ps, err := procstat.Read(pid); err == nil {
		u.RSS, u.FDs = ps.RSS, ps.FDs
	}
	return u, nil
}
