package capture

import (
	"bytes"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/internal/session"
)

// FuzzReadPackets feeds arbitrary bytes to the pcap reader: it must never
// panic, and whatever it accepts must make sense (each flow's RSTs among
// the packets counted, the attribution runs on it). Seeds: pcap files of
// every link type the reader knows, a pcapng file, and a cut one.
//
//	go test -run '^$' -fuzz FuzzReadPackets -fuzztime 10s ./capture/
func FuzzReadPackets(f *testing.F) {
	segs := serverAbortSegs("127.0.0.1:50000", "127.0.0.1:8080")
	six := serverAbortSegs("[::1]:50000", "[::1]:8080")
	for _, link := range []linkType{linkEthernet, linkSLL, linkSLL2, linkNull, linkRaw} {
		f.Add(pcapFile(f, link, 0, segs...))
		f.Add(pcapFile(f, link, 60, six...))
	}
	var ng bytes.Buffer
	nw, _ := pcapgo.NewNgWriter(&ng, layers.LinkTypeEthernet)
	for _, s := range segs {
		data := frame(f, linkEthernet, s)
		nw.WritePacket(gopacket.CaptureInfo{Timestamp: t0.Add(s.at), CaptureLength: len(data), Length: len(data)}, data)
	}
	nw.Flush()
	f.Add(ng.Bytes())
	full := pcapFile(f, linkEthernet, 0, segs...)
	f.Add(full[:len(full)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ReadPackets(bytes.NewReader(data), []int{8080})
		if res == nil {
			if err == nil {
				t.Fatal("no result and no error")
			}
			return
		}
		var rsts uint64
		for _, fl := range res.Flows {
			rsts += uint64(len(fl.RSTs) + fl.RSTsOmitted)
			if fl.Last.Before(fl.First) && !fl.Last.IsZero() {
				// Out-of-order timestamps in a file are possible; they must
				// not break the summary, only reorder it.
				_ = fl
			}
		}
		if rsts != res.Resets || res.Resets > res.Packets {
			t.Fatalf("flows hold %d RSTs, the reader counted %d of %d packets", rsts, res.Resets, res.Packets)
		}
		in := &attribution.Input{}
		in.AddCapture(session.CaptureInfo{ID: "fuzz"}, res.Flows)
		out := attribution.Analyze(in, attribution.Options{})
		var kept int
		for _, fl := range res.Flows {
			kept += len(fl.RSTs)
		}
		if len(out.Segments) > kept {
			t.Fatalf("%d segments attributed for %d RST packets kept", len(out.Segments), kept)
		}
		for _, s := range out.Segments {
			if s.Sender.Role == "" || len(s.Captures) != 1 || s.Kind == "" {
				t.Fatalf("bad segment %+v", s)
			}
		}
		_ = session.Reset{}
	})
}
