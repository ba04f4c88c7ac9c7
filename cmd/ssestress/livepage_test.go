package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// TestLivePageInChromium opens the live page of a running run (two new
// clients a second, each reset 500 ms after it opens by a fault of the
// in-process proxy on its upstream hop, so events keep coming) in headless
// Chromium, through the DevTools protocol: the page fills itself from
// /live/events, its numbers change between two reads of its DOM two
// seconds apart, its tables show the errors and resets and its verdict
// comes, every request it makes goes to the live view itself (the browser
// has no other network: a dead proxy for everything but loopback), and it
// says so when the run ends.
func TestLivePageInChromium(t *testing.T) {
	chrome := findChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	var stdout, stderr runTestBuffer
	done := make(chan int, 1)
	go func() {
		done <- exitCode(run(ctx, []string{"run", "--connections=20", "--rate=2", "--duration=10s", "--event-rate=3000",
			"--fault", "reset:hop=upstream,after=500ms", "--monitor-interval=250ms", "--http", "127.0.0.1:0", "--json",
			"--out", filepath.Join(t.TempDir(), "page.db")}, &stdout, &stderr), &stderr)
	}()
	live := liveURL(t, &stderr, done)

	resp, err := http.Get(live + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("page content type %q", ct)
	}
	// Self-contained: no URL of any scheme, nor a protocol-relative one.
	if loc := regexp.MustCompile(`(?i)[a-z][a-z0-9+.-]*://|//|\b(src|href)\s*=\s*["']?[a-z]+:`).FindIndex(page); loc != nil {
		t.Errorf("the page names an external resource: %q", page[max(0, loc[0]-40):min(len(page), loc[1]+40)])
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}

	b := startChromium(t, ctx, chrome)
	if _, err := b.call("Network.enable", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.call("Page.navigate", map[string]any{"url": live + "/"}); err != nil {
		t.Fatal(err)
	}
	type dom struct {
		Events, Active, Rate, Status, Verdict, Errors, Resets string
		Snapshots                                             int
	}
	// read reads the page's DOM (the zero dom while the page loads).
	read := func() dom {
		var d dom
		raw := b.eval(t, `JSON.stringify({Events: document.getElementById("events").textContent,
			Active: document.getElementById("active").textContent, Rate: document.getElementById("events-per-s").textContent,
			Status: document.getElementById("status").textContent, Verdict: document.getElementById("verdict").textContent,
			Errors: document.getElementById("errors").textContent, Resets: document.getElementById("resets").textContent,
			Snapshots: +document.getElementById("snapshots").dataset.count})`)
		if raw == "" {
			return d
		}
		if err := json.Unmarshal([]byte(raw), &d); err != nil {
			t.Fatalf("DOM read %q: %v", raw, err)
		}
		return d
	}
	// number reads a count the page shows ("12,345"); -1 when it shows none.
	number := func(s string) int64 {
		n, err := strconv.ParseInt(strings.ReplaceAll(s, ",", ""), 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	var first dom
	pollUntil(t, 20*time.Second, "the page's first snapshot with events", func() bool {
		first = read()
		return first.Snapshots > 0 && number(first.Events) > 0
	})
	time.Sleep(2 * time.Second) // the two reads are seconds apart
	second := read()
	t.Logf("DOM read twice 2 s apart:\n  %+v\n  %+v", first, second)
	if number(second.Events) <= number(first.Events) || second.Snapshots <= first.Snapshots {
		t.Errorf("the page did not change in 2 s: %+v, then %+v", first, second)
	}
	if second.Status != "live" || number(second.Active) < 0 || second.Rate == "–" {
		t.Errorf("page state %+v", second)
	}
	var late dom
	pollUntil(t, 10*time.Second, "errors, resets by hop and a verdict on the page", func() bool {
		late = read()
		return strings.Contains(late.Errors, "ECONNRESET") && strings.Contains(late.Resets, "run-proxy/upstream") &&
			!strings.Contains(late.Verdict, "waiting") && late.Verdict != ""
	})
	t.Logf("later: %+v", late)
	if !strings.Contains(late.Verdict, "run-proxy") {
		t.Errorf("the verdict does not name the proxy whose fault reset the streams: %q", late.Verdict)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("run exit %d: %s", code, stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("the run did not end")
	}
	pollUntil(t, 5*time.Second, "the page to say the run ended", func() bool { return read().Status == "ended" })

	for _, u := range b.requests() {
		if !strings.HasPrefix(u, live+"/") {
			t.Errorf("the page fetched %s, not from the live view %s", u, live)
		}
	}
	t.Logf("requests: %v", b.requests())
	if len(b.requests()) < 2 {
		t.Errorf("requests seen %v: want the page and its event stream", b.requests())
	}
}

// pollUntil polls cond every 100 ms for at most d.
func pollUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

// findChromium returns the browser's path, or skips the test.
func findChromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it): the live page is not tested in a browser")
	return ""
}

// browser is headless Chromium driven over the DevTools protocol: one
// page, its requests recorded.
type browser struct {
	ws      *websocket.Conn
	mu      sync.Mutex
	id      int
	waiting map[int]chan cdpMessage
	urls    []string
}

type cdpMessage struct {
	ID     int             `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// startChromium starts the browser on about:blank with no network but
// loopback (every other host goes to a proxy where nothing listens) and
// connects to its page. It is stopped at the end of the test.
func startChromium(t *testing.T, ctx context.Context, chrome string) *browser {
	t.Helper()
	profile := t.TempDir()
	cmd := exec.Command(chrome, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir="+profile,
		"--remote-debugging-port=0", "--remote-allow-origins=*", "--proxy-server=127.0.0.1:9", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its helper processes go with it
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Skipf("chromium does not start: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	// Chromium writes the DevTools port into the profile once it listens.
	var port string
	pollUntil(t, 20*time.Second, "chromium's DevTools port", func() bool {
		select {
		case <-exited:
			t.Fatal("chromium exited at start")
		default:
		}
		raw, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort"))
		if err != nil {
			return false
		}
		port, _, _ = strings.Cut(string(raw), "\n")
		return port != ""
	})
	var wsURL string
	pollUntil(t, 10*time.Second, "chromium's page target", func() bool {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://127.0.0.1:"+port+"/json/list", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var targets []struct {
			Type  string `json:"type"`
			WSURL string `json:"webSocketDebuggerUrl"`
		}
		if json.NewDecoder(resp.Body).Decode(&targets) != nil {
			return false
		}
		for _, tg := range targets {
			if tg.Type == "page" {
				wsURL = tg.WSURL
			}
		}
		return wsURL != ""
	})
	ws, err := websocket.Dial(wsURL, "", "http://127.0.0.1/")
	if err != nil {
		t.Fatalf("DevTools connection: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	b := &browser{ws: ws, waiting: map[int]chan cdpMessage{}}
	go b.readLoop()
	return b
}

func (b *browser) readLoop() {
	for {
		var m cdpMessage
		if err := websocket.JSON.Receive(b.ws, &m); err != nil {
			b.mu.Lock()
			for id, ch := range b.waiting {
				close(ch)
				delete(b.waiting, id)
			}
			b.mu.Unlock()
			return
		}
		b.mu.Lock()
		if m.Method == "Network.requestWillBeSent" {
			var p struct {
				Request struct {
					URL string `json:"url"`
				} `json:"request"`
			}
			if json.Unmarshal(m.Params, &p) == nil {
				b.urls = append(b.urls, p.Request.URL)
			}
		}
		if ch, ok := b.waiting[m.ID]; ok && m.ID != 0 {
			ch <- m
			delete(b.waiting, m.ID)
		}
		b.mu.Unlock()
	}
}

// call sends a DevTools command and waits (at most 10 s) for its result.
func (b *browser) call(method string, params any) (json.RawMessage, error) {
	b.mu.Lock()
	b.id++
	id := b.id
	ch := make(chan cdpMessage, 1)
	b.waiting[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if err := websocket.JSON.Send(b.ws, msg); err != nil {
		return nil, err
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return nil, errors.New("DevTools connection closed")
		}
		if m.Error != nil {
			return nil, fmt.Errorf("%s: %s", method, m.Error.Message)
		}
		return m.Result, nil
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("%s: no answer in 10 s", method)
	}
}

// eval evaluates a JavaScript expression in the page and returns its
// value as a string.
func (b *browser) eval(t *testing.T, expr string) string {
	t.Helper()
	raw, err := b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if r.ExceptionDetails != nil {
		return "" // the page is not loaded yet
	}
	s, _ := r.Result.Value.(string)
	return s
}

// requests are the URLs the page has requested so far.
func (b *browser) requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.urls...)
}
