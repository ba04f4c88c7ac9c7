package proxy

import (
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// TestToxiproxyGoClient drives the API with Toxiproxy's own Go client
// (github.com/Shopify/toxiproxy/v2/client, v2.5.0): proxies listed,
// created, disabled and enabled, populated, reset and deleted; toxics added,
// updated and removed, with their effect on real SSE streams through a
// proxy added at run time; and every proxy's records in the one session
// file under its own name.
func TestToxiproxyGoClient(t *testing.T) {
	srv := startFeedT(t)
	u, _ := url.Parse(srv)
	upstream := u.Host
	w, path := newSession(t)
	first := startProxy(t, Config{Upstream: srv, Name: "edge", API: "127.0.0.1:0", Session: w, Version: "v9.9.9",
		Faults: withFaults(t, "drop-events:every=1000,name=rare")})
	c := toxiproxy.NewClient(first.APIAddr())

	proxies, err := c.Proxies()
	if err != nil {
		t.Fatal(err)
	}
	edge := proxies["edge"]
	if len(proxies) != 1 || edge == nil || edge.Listen != first.Addr() || edge.Upstream != upstream || !edge.Enabled {
		t.Fatalf("Proxies: %+v", proxies)
	}
	if len(edge.ActiveToxics) != 1 || edge.ActiveToxics[0].Type != "drop-events" || edge.ActiveToxics[0].Attributes["every"] != 1000.0 {
		t.Fatalf("edge's toxics: %+v", edge.ActiveToxics)
	}
	if code, body := api(t, first, "", "GET", "/version", ""); code != 200 || body != "v9.9.9" {
		t.Fatalf("/version: %d %q", code, body)
	}

	feed2, err := c.CreateProxy("feed2", "127.0.0.1:0", upstream)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(feed2.Listen, ":0") || !feed2.Enabled {
		t.Fatalf("created: %+v", feed2)
	}
	streamURL := "http://" + feed2.Listen + "/ticks"
	if g := readStream(t, streamURL, 3, 5*time.Second); len(g.events) != 3 {
		t.Fatalf("through feed2: %d events, %v", len(g.events), g.err)
	}

	// latency: Toxiproxy's milliseconds.
	if _, err := feed2.AddToxic("lat", "latency", "downstream", 1, toxiproxy.Attributes{"latency": 300}); err != nil {
		t.Fatal(err)
	}
	g := readStream(t, streamURL, 2, 5*time.Second)
	if len(g.events) != 2 || g.arrivals[0].Sub(g.start) < 280*time.Millisecond {
		t.Fatalf("with latency 300: %d events, first after %v", len(g.events), g.arrivals[0].Sub(g.start))
	}
	tx, err := feed2.UpdateToxic("lat", -1, toxiproxy.Attributes{"jitter": 10})
	if err != nil {
		t.Fatal(err)
	}
	if tx.Attributes["latency"] != 300.0 || tx.Attributes["jitter"] != 10.0 || tx.Stream != "downstream" || tx.Toxicity != 1 {
		t.Fatalf("updated: %+v", tx)
	}
	if err := feed2.RemoveToxic("lat"); err != nil {
		t.Fatal(err)
	}

	// reset_peer: a TCP reset timeout ms after the connection.
	if _, err := c.AddToxic(&toxiproxy.ToxicOptions{ProxyName: "feed2", ToxicName: "rp", ToxicType: "reset_peer",
		Stream: "downstream", Toxicity: 1, Attributes: toxiproxy.Attributes{"timeout": 200}}); err != nil {
		t.Fatal(err)
	}
	toxics, err := feed2.Toxics()
	if err != nil || len(toxics) != 1 || toxics[0].Name != "rp" || toxics[0].Attributes["timeout"] != 200.0 {
		t.Fatalf("Toxics: %+v %v", toxics, err)
	}
	g = readStream(t, streamURL, 0, 5*time.Second)
	if g.class != errclass.ECONNRESET {
		t.Fatalf("with reset_peer: %s (%v) after %d events", g.class, g.err, len(g.events))
	}
	// Not before the timeout; the upper bound only catches a reset that
	// never came from the toxic (a loaded machine delivers late).
	if d := g.endAt.Sub(g.start); d < 180*time.Millisecond || d > 3*time.Second {
		t.Fatalf("reset %v after the request, want 200ms (tolerance -20ms, +2.8s)", d)
	}
	if _, err := feed2.AddToxic("rp", "latency", "downstream", 1, nil); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("a second toxic named rp: %v", err)
	}
	if _, err := feed2.AddToxic("x", "wobble", "", 1, nil); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("an unknown type: %v", err)
	}
	if err := c.RemoveToxic(&toxiproxy.ToxicOptions{ProxyName: "feed2", ToxicName: "rp"}); err != nil {
		t.Fatal(err)
	}
	if g := readStream(t, streamURL, 3, 5*time.Second); len(g.events) != 3 {
		t.Fatalf("after removing reset_peer: %d events, %v", len(g.events), g.err)
	}

	// Disabled: the listener is closed, as Toxiproxy's.
	if err := feed2.Disable(); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", feed2.Listen, time.Second); err == nil {
		conn.Close()
		t.Fatal("a disabled proxy accepted a connection")
	}
	if err := feed2.Enable(); err != nil {
		t.Fatal(err)
	}
	if g := readStream(t, streamURL, 2, 5*time.Second); len(g.events) != 2 {
		t.Fatalf("enabled again: %d events, %v", len(g.events), g.err)
	}

	populated, err := c.Populate([]toxiproxy.Proxy{{Name: "feed3", Listen: "127.0.0.1:0", Upstream: upstream, Enabled: true}})
	if err != nil || len(populated) != 1 || populated[0].Name != "feed3" {
		t.Fatalf("Populate: %+v %v", populated, err)
	}
	if _, err := edge.AddToxic("slow", "slow_close", "upstream", 0.5, toxiproxy.Attributes{"delay": 100}); err != nil {
		t.Fatal(err)
	}
	if err := c.ResetState(); err != nil {
		t.Fatal(err)
	}
	proxies, err = c.Proxies()
	if err != nil || len(proxies) != 3 {
		t.Fatalf("after reset: %+v %v", proxies, err)
	}
	if tx := proxies["edge"].ActiveToxics; len(tx) != 1 || tx[0].Name != "rare" {
		t.Fatalf("reset: edge's toxics are %+v, want its --fault only", tx)
	}
	if err := proxies["feed3"].Delete(); err != nil {
		t.Fatal(err)
	}
	if err := proxies["edge"].Delete(); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("deleting the first proxy: %v", err)
	}

	// Every proxy's records, under its own name, in the one file.
	_, faults := readSession(t, first, w, path)
	r, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	infos, err := session.All[session.ProxyInfo](r, session.BucketProxies)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]session.ProxyInfo{}
	for _, pi := range infos {
		names[pi.Name] = pi
	}
	if len(names) != 3 || names["feed2"].Upstream != upstream || names["feed2"].Stopped.IsZero() || names["feed2"].Connections != 5 {
		t.Fatalf("proxies in the file: %+v", infos)
	}
	var resets []session.FaultEvent
	for _, f := range faults {
		if f.Proxy == "feed2" && f.FaultName == "rp" {
			resets = append(resets, f)
		}
	}
	if len(resets) != 1 || resets[0].FaultKind != "reset" || resets[0].Ending != session.EndingRST || resets[0].Hop != session.HopClient {
		t.Fatalf("feed2's reset_peer firings: %+v, want one reset of the client hop", resets)
	}
}
