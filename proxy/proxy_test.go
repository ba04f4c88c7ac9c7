package proxy

import (
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/feed"
)

func TestReverseProxyStreamsFeed(t *testing.T) {
	srv := startFeed(t, feed.Config{Rate: feed.Rate{Min: 1200, Max: 1200}})
	p := startProxy(t, Config{Upstream: srv.URL, Name: "p1"})
	g := readStream(t, p.URL()+"/stream?symbols=AAPL", 5, 10*time.Second)
	if len(g.events) != 5 {
		t.Fatalf("got %d events (err %v)", len(g.events), g.err)
	}
	for _, e := range g.events {
		if e.Type != "quote" {
			t.Errorf("event type %q", e.Type)
		}
	}
}
