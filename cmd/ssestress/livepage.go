package main

import (
	_ "embed"
	"net/http"
)

// livePage is the live view's page: one self-contained file (its style
// and script inline, no external URL, so it works with no network) that
// reads /live/events with an EventSource and fills itself in.
//
//go:embed livepage.html
var livePage []byte

func serveLivePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// Nothing but this origin: the page fetches nothing else.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'")
	w.Write(livePage)
}
