package redact

import (
	"net/http"
	"strings"
	"testing"
)

func TestName(t *testing.T) {
	yes := []string{"Authorization", "proxy-authorization", "Cookie", "Set-Cookie", "X-Api-Key", "X-Auth-Token",
		"token", "access_token", "api_key", "apikey", "key", "sig", "X-Amz-Signature", "accessToken",
		"client_secret", "password", "X-Session-Id", "jwt", "refresh-token", "X-Goog-Api-Key", "auth"}
	no := []string{"symbols", "Accept", "Last-Event-ID", "Keep-Alive", "keyword", "monkey", "Content-Type",
		"User-Agent", "X-Forwarded-For", "design", "id", "Cache-Control", ""}
	for _, n := range yes {
		if !Name(n) {
			t.Errorf("Name(%q) = false, want true", n)
		}
	}
	for _, n := range no {
		if Name(n) {
			t.Errorf("Name(%q) = true, want false", n)
		}
	}
}

func TestAlso(t *testing.T) {
	if Name("X-Tenant") {
		t.Fatal("X-Tenant before Also")
	}
	Also(" x-tenant ", "")
	defer func() { mu.Lock(); delete(extra, "x-tenant"); mu.Unlock() }()
	if !Name("X-Tenant") || Query("x-tenant=acme&a=1") != "x-tenant="+Marker+"&a=1" {
		t.Fatal("Also did not add X-Tenant")
	}
}

func TestQuery(t *testing.T) {
	for in, want := range map[string]string{
		"":                                  "",
		"symbols=AAPL,MSFT":                 "symbols=AAPL,MSFT",
		"symbols=AAPL&token=s3cr3t":         "symbols=AAPL&token=" + Marker,
		"access_token=a&api_key=b&key=c&x=": "access_token=" + Marker + "&api_key=" + Marker + "&key=" + Marker + "&x=",
		"sig=abc%3D%3D&t=1":                 "sig=" + Marker + "&t=1",
		"api%5Fkey=zzz":                     "api%5Fkey=" + Marker,
		"flag&token":                        "flag&token",
	} {
		if got := Query(in); got != want {
			t.Errorf("Query(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8090/stream?symbols={symbols}&token=T0K3N": "http://127.0.0.1:8090/stream?symbols={symbols}&token=" + Marker,
		"https://user:pa55@feed.example/s":                           "https://user:" + Marker + "@feed.example/s",
		"https://feed.example/s;jsessionid=ABCDEF":                   "https://feed.example/s;jsessionid=" + Marker,
		"http://127.0.0.1:1/x":                                       "http://127.0.0.1:1/x",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestText(t *testing.T) {
	secret := "Zq9-very-secret"
	for _, in := range []string{
		`Get "http://127.0.0.1:9/stream?symbols=A&access_token=` + secret + `": dial tcp: connection refused`,
		"GET /s?api_key=" + secret + " HTTP/1.1",
		"upstream https://bob:" + secret + "@10.0.0.1/feed failed",
		"key=" + secret,
		"(sig=" + secret + ")",
		"text/plain; seen=Bearer " + secret,
		`content type "x; a=Basic ` + secret + `" is not text/event-stream`,
	} {
		got := Text(in)
		if strings.Contains(got, secret) || !strings.Contains(got, Marker) {
			t.Errorf("Text(%q) = %q", in, got)
		}
		if Text(got) != got {
			t.Errorf("Text is not idempotent on %q", got)
		}
	}
	for _, in := range []string{"a=b c=d", "symbols=AAPL,MSFT", "mail bob@example.com", "x == y", "path/key=v", "a bearer of news", "Bearer"} {
		if got := Text(in); got != in {
			t.Errorf("Text(%q) = %q, want it unchanged", in, got)
		}
	}
}

func TestHeaders(t *testing.T) {
	h := http.Header{"X-Api-Key": {"k1"}, "Accept": {"text/event-stream"}, "Cookie": {"a=b"}}
	out, names := Headers(h)
	if out.Get("X-Api-Key") != Marker || out.Get("Cookie") != Marker || out.Get("Accept") != "text/event-stream" || len(names) != 2 {
		t.Fatalf("Headers: %v %v", out, names)
	}
	if h.Get("X-Api-Key") != "k1" {
		t.Fatal("Headers changed its input")
	}
}
