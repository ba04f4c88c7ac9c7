package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/capture"
	"github.com/ssestress/ssestress/internal/session"
)

// readEvidence reads session files, with their errors, into one input for
// the attribution engine.
func readEvidence(paths []string) (*attribution.Input, error) {
	in := &attribution.Input{}
	for _, p := range paths {
		r, err := session.Open(p)
		if err != nil {
			return nil, err
		}
		_, err = in.ReadFile(r, true)
		r.Close()
		if err != nil {
			return nil, err
		}
	}
	return in, nil
}

// resolver resolves the topology's host names, bounded in time.
func resolver(ctx context.Context) func(string) []netip.Addr {
	return func(host string) []netip.Addr {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil
		}
		return addrs
	}
}

// storeAttribution appends to a closed session file what attribution
// found, as the resets bucket's cache, and the captures and flows given
// (pcap files stored with capture analyze --store).
func storeAttribution(path string, res *attribution.Result, captures []session.CaptureInfo, flows [][]session.Flow) error {
	var writeErr error
	w, err := session.Create(path, session.Options{Append: true, OnError: func(err error) { writeErr = err }})
	if err != nil {
		return err
	}
	for i, ci := range captures {
		w.Put(ci)
		for _, f := range flows[i] {
			f.Capture = ci.ID
			w.Put(f)
		}
	}
	for _, r := range attribution.CacheRecords(res.Segments) {
		w.Put(r)
	}
	if err := w.Close(); err != nil {
		return err
	}
	if writeErr != nil {
		return fmt.Errorf("%s: store the attribution: %w", path, writeErr)
	}
	return nil
}

// endOfRunAttribution explains what a command's closed session file holds
// and says the answer in one line (the verdict's first sentence), naming
// its numbers as the verdict does (client errors, failed client
// connections of a proxy); it stores the RST segments as the file's
// cache. Nothing is printed when there is nothing to explain.
func endOfRunAttribution(ctx context.Context, command, path string, w io.Writer) {
	in, err := readEvidence([]string{path})
	if err != nil {
		fmt.Fprintf(w, "ssestress %s: attribution: %v\n", command, err)
		return
	}
	res := attribution.Analyze(in, attribution.Options{Resolve: resolver(context.WithoutCancel(ctx))})
	if len(res.Segments) > 0 {
		if err := storeAttribution(path, res, nil, nil); err != nil {
			fmt.Fprintf(w, "ssestress %s: attribution: %v\n", command, err)
		}
	}
	if res.Verdict.Cause == nil {
		return
	}
	fmt.Fprintf(w, "ssestress %s: %s (ssestress report %s)\n", command, attribution.FirstSentence(res.Verdict.Statement), path)
}

// captureCaptures gives a stopped capture's descriptions and flows for
// analysis without a session file.
func captureInput(m *capture.Multi) *attribution.Input {
	in := &attribution.Input{}
	for _, c := range m.Captures() {
		in.AddCapture(c.Info(), c.ResetFlows())
	}
	return in
}
