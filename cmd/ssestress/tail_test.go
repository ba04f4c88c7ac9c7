package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/feed"
)

// TestTailJSONAgainstFeed: --json --count 3 prints the retry field and
// three events in exactly the documented format, then exits 0.
func TestTailJSONAgainstFeed(t *testing.T) {
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 6000, Max: 6000}, Retry: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	stdout, stderr, code := runCLI(t, ctx, "tail", "--json", srv.URL+"/stream?symbols=AAPL,MSFT", "--count", "3")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 4 || lines[0] != `{"type":"retry","retry_s":0.25}` {
		t.Fatalf("output:\n%s", stdout)
	}
	eventLine := regexp.MustCompile(`^\{"type":"event","id":"(\d+)","event":"quote","data":"\{\\"symbol\\":\\"(AAPL|MSFT)\\",.*\}","time":"([^"]+)"\}$`)
	prev := 0
	for _, l := range lines[1:] {
		m := eventLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("event line %q", l)
		}
		var id int
		fmt.Sscan(m[1], &id)
		if prev != 0 && id != prev+1 {
			t.Fatalf("ids %d then %d", prev, id)
		}
		prev = id
		if _, err := time.Parse(time.RFC3339Nano, m[3]); err != nil {
			t.Fatalf("time %q: %v", m[3], err)
		}
		var v struct{ Data string }
		if err := json.Unmarshal([]byte(l), &v); err != nil || !json.Valid([]byte(v.Data)) {
			t.Fatalf("data of %q is not the server's JSON", l)
		}
	}
}

// TestTailPlainText: without --json one readable line per event.
func TestTailPlainText(t *testing.T) {
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 6000, Max: 6000}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	stdout, _, code := runCLI(t, ctx, "tail", "--count=2", srv.URL+"/stream?symbols=AAPL")
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if code != 0 || len(lines) != 3 || !regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} retry 3s$`).MatchString(lines[0]) {
		t.Fatalf("exit %d, output:\n%s", code, stdout)
	}
	for _, l := range lines[1:] {
		if !regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} quote id=\d+: \{"symbol":"AAPL",`).MatchString(l) {
			t.Fatalf("event line %q", l)
		}
	}
}

// TestTailReconnect: the server resets the stream after one event; tail
// prints the error and the reconnect, sends Last-Event-ID, and goes on.
func TestTailReconnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out := &runTestBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- tailCmd.execute(ctx, []string{"--json", "--count=2", "http://" + ln.Addr().String() + "/stream"}, out, io.Discard)
	}()
	accept := func() (net.Conn, *http.Request) {
		t.Helper()
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(runTestTimeout))
		for {
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(runTestTimeout))
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err != nil {
				c.Close() // the pre-flight probe connects and sends nothing
				continue
			}
			return c, req
		}
	}
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
	chunk := func(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }

	c1, _ := accept()
	defer c1.Close()
	io.WriteString(c1, head+chunk("retry: 100\n\nid: 1\ndata: one\n\n"))
	for deadline := time.Now().Add(runTestTimeout); !strings.Contains(out.String(), `"id":"1"`); {
		if time.Now().After(deadline) {
			t.Fatal("tail never printed the first event")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c1.(*net.TCPConn).SetLinger(0)
	c1.Close()

	c2, req := accept()
	defer c2.Close()
	if got := req.Header.Get("Last-Event-ID"); got != "1" {
		t.Errorf("reconnect sent Last-Event-ID %q", got)
	}
	io.WriteString(c2, head+chunk("id: 2\nevent: quote\ndata: two\n\n"))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []string{
		`{"type":"retry","retry_s":0.1}`,
		`{"type":"event","id":"1","event":"message","data":"one","time":"`,
		`{"type":"error","class":"ECONNRESET","message":"read tcp `,
		`{"type":"reconnect","attempt":1,"delay_s":0.1,"last_event_id":"1"}`,
		`{"type":"event","id":"2","event":"quote","data":"two","time":"`,
	}
	if len(lines) != len(want) {
		t.Fatalf("output:\n%s", out.String())
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("line %d\n got: %s\nwant: %s...", i, lines[i], want[i])
		}
	}
}

func TestTailBadInput(t *testing.T) {
	srv, err := feed.Start("127.0.0.1:0", feed.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	dead := closedPort(t)
	for _, tc := range []struct {
		args   []string
		msg    string
		code   int
		stdout string
	}{
		{[]string{"tail"}, "tail: no URL given (usage: ssestress " + tailSynopsis + ")", 2, ""},
		{[]string{"tail", "a", "b"}, `tail: one URL only, got "a" and "b"`, 2, ""},
		{[]string{"tail", "localhost:8090"}, `tail: invalid URL "localhost:8090": scheme must be http or https`, 2, ""},
		{[]string{"tail", "--count=-1", srv.URL}, "tail: --count must not be negative", 2, ""},
		{[]string{"tail", "--header", "bad", srv.URL}, "tail: --header number 1 is not 'Name: value' (not shown: it may hold a credential)", 2, ""},
		{[]string{"tail", "http://" + dead + "/stream"},
			"cannot reach http://" + dead + "/stream: dial tcp " + dead + ": connect: connection refused (ECONNREFUSED)", 1, ""},
		{[]string{"tail", "--json", srv.URL + "/missing"}, "stream failed: HTTP status 404 (HTTP_404)", 1,
			`{"type":"error","class":"HTTP_404","message":"HTTP status 404"}` + "\n"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
		stdout, stderr, code := runCLI(t, ctx, tc.args...)
		cancel()
		if want := "ssestress: " + tc.msg + "\n"; stderr != want || code != tc.code || stdout != tc.stdout {
			t.Errorf("%v: exit %d, stderr %q (want %q), stdout %q", tc.args, code, stderr, want, stdout)
		}
	}
}
