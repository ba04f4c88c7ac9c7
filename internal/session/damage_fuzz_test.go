package session_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/session/damagetest"
)

// FuzzDamagedSessionFile mutates the bytes of a real session file
// (overwrite, bit flips, truncation at any offset) and runs every reader a
// command reaches on it: Salvage, Open, Meta, Count, Each, Decode of every record
// type, bbolt's consistency check, recording.Read (recordings, replay),
// analysis.Load (report), then a Writer appending to it (capture analyze
// --store). Open either refuses the file with one line that
// names it and wraps ErrDamaged, ErrTruncated or ErrNotSession, or every
// reader returns; a panic fails the target, and so does a panic that the
// Reader's guard caught (a *session.PanicError): damage that got past
// the validator.
//
// Run longer with:
//
//	go test -run '^$' -fuzz '^FuzzDamagedSessionFile$' -fuzztime 5m ./internal/session/
func FuzzDamagedSessionFile(f *testing.F) {
	base := damagetest.Small(f)
	f.Add(uint32(0), []byte{0xff}, uint8(0))
	f.Add(uint32(4096+16+16), []byte{0x40, 0x42, 0x0f, 0, 0, 0, 0, 0}, uint8(0)) // meta 1 root
	f.Add(uint32(2*4096+10), []byte{0xff, 0xff}, uint8(0))                       // a page's count
	f.Add(uint32(3*4096+12), []byte{0xff, 0xff, 0xff, 0x7f}, uint8(0))           // a page's overflow
	f.Add(uint32(len(base)/2), []byte{}, uint8(1))                               // truncation
	f.Add(uint32(len(base)/3), []byte{0x10}, uint8(2))                           // bit flip
	for i := 2; i*4096 < len(base); i += 5 {
		f.Add(uint32(i*4096+16), bytes.Repeat([]byte{0xee}, 16), uint8(0))
	}
	f.Fuzz(func(t *testing.T, off uint32, patch []byte, mode uint8) {
		d := bytes.Clone(base)
		at := int(off) % len(d)
		switch mode % 3 {
		case 0:
			copy(d[at:], patch)
		case 1:
			d = d[:at]
		case 2:
			for i, b := range patch {
				if at+i < len(d) {
					d[at+i] ^= b
				}
			}
		}
		path := filepath.Join(fuzzDir(t), "damaged.db")
		if err := os.WriteFile(path, d, 0o644); err != nil {
			t.Fatal(err)
		}
		// Salvage reads any file without crashing: it copies what it can or
		// says why it cannot.
		if _, err := session.Salvage(path, path+".salvaged", session.SalvageOptions{}); err != nil &&
			!errors.Is(err, session.ErrDamaged) && !errors.Is(err, session.ErrNotSession) {
			t.Fatalf("Salvage: unexpected error kind: %v", err)
		}
		r, err := session.Open(path)
		if err != nil {
			if !errors.Is(err, session.ErrDamaged) && !errors.Is(err, session.ErrTruncated) &&
				!errors.Is(err, session.ErrNotSession) && !errors.Is(err, session.ErrNewerSchema) {
				t.Fatalf("Open: unexpected error kind: %v", err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, path) || strings.Contains(msg, "\n") {
				t.Fatalf("Open's error is not one line naming the file: %q", msg)
			}
			var pe *session.PanicError
			if errors.As(err, &pe) {
				t.Fatalf("Open panicked inside bbolt after validation: %v", err)
			}
			return
		}
		defer r.Close()
		var errs []error
		for _, b := range session.Buckets {
			r.Count(b)
			errs = append(errs, r.Each(b, func(k, v []byte) error { return nil }))
		}
		var run session.RunInfo
		_, err = r.Meta(session.MetaRun, &run)
		errs = append(errs, err,
			decodeAll[session.Endpoint](r, session.BucketTopology),
			decodeAll[session.ConnRecord](r, session.BucketConns),
			decodeAll[session.ErrorRecord](r, session.BucketErrors),
			decodeAll[session.Sample](r, session.BucketSamples),
			decodeAll[session.HopConn](r, session.BucketHopConns),
			decodeAll[session.FaultEvent](r, session.BucketFaults),
			decodeAll[session.Flow](r, session.BucketFlows),
			decodeAll[session.Reset](r, session.BucketResets),
			decodeAll[session.RecStream](r, session.BucketRecStreams),
			decodeAll[session.RecEvent](r, session.BucketRecEvents),
			r.Check())
		_, err = recording.Read(r)
		errs = append(errs, err)
		_, err = analysis.Load(r)
		errs = append(errs, err)
		for _, err := range errs {
			var pe *session.PanicError
			if errors.As(err, &pe) {
				t.Fatalf("a reader panicked inside bbolt after validation: %v", err)
			}
		}
		r.Close()
		// A writer appending to it (capture analyze --store): bbolt
		// rebuilds the freelist, and then writes.
		w, err := session.Create(path, session.Options{Append: true})
		if err != nil {
			if !errors.Is(err, session.ErrDamaged) && !errors.Is(err, session.ErrTruncated) {
				t.Fatalf("Create(Append): unexpected error kind: %v", err)
			}
			return
		}
		w.Put(session.ErrorRecord{Class: "ECONNRESET", ConnID: "fuzz"})
		w.Close()
	})
}
