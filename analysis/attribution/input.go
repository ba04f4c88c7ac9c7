package attribution

import (
	stderrors "errors"
	"fmt"
	"path/filepath"

	"github.com/ssestress/ssestress/internal/session"
)

// File is what one session file says about itself.
type File struct {
	Name string // base name, for messages
	Run  session.RunInfo
}

// Input is the raw evidence of any number of session files and captures.
// Records keep the index of the file they came from (in Files) so that
// two files' proxies of the same name stay apart.
type Input struct {
	Files    []File
	Topology []Rec[session.Endpoint]
	Proxies  []Rec[session.ProxyInfo]
	HopConns []Rec[session.HopConn]
	Faults   []Rec[session.FaultEvent]
	Captures []Rec[session.CaptureInfo]
	Flows    []Rec[session.Flow]
	// Conns and Errors are the generated clients' connection attempts and
	// the classified failures. A consumer that streams them (analysis)
	// leaves them empty and passes each to Engine.ClientConn and
	// Engine.Explain.
	Conns  []Rec[session.ConnRecord]
	Errors []Rec[session.ErrorRecord]
	// Kernel are the kernel's reset events (bucket kernel_events; state
	// events are skipped), and KernelInfo each file's collector (meta
	// "kernel"): whether it ran, and what it lost.
	Kernel     []Rec[session.KernelEvent]
	KernelInfo []Rec[session.KernelInfo]
	// Skipped counts, per file index and bucket, the records ReadFile left
	// out because they did not decode (a damaged or foreign record): one
	// bad record never stops an attribution.
	Skipped map[int]map[string]session.Unreadable
}

// Rec is a record and the index of its file in Input.Files.
type Rec[T any] struct {
	File int
	R    T
}

// AddFile registers a file and returns its index.
func (in *Input) AddFile(name string, run session.RunInfo) int {
	in.Files = append(in.Files, File{Name: name, Run: run})
	return len(in.Files) - 1
}

// ReadFile reads what attribution needs from a session file: its run
// info, topology, proxies, hop connections, fault firings, captures,
// flows and kernel reset events; with errors set, its clients' connection
// attempts and error records too. It returns the file's index.
func (in *Input) ReadFile(r *session.Reader, errors bool) (int, error) {
	var run session.RunInfo
	f := len(in.Files)
	if _, err := r.Meta(session.MetaRun, &run); err != nil {
		if stderrors.Is(err, session.ErrDamaged) {
			return f, fmt.Errorf("%s: run info: %w", r.Path(), err)
		}
		in.skip(f, session.BucketMeta, session.Unreadable{Records: 1, First: "key \"run\": " + err.Error()})
	}
	in.AddFile(filepath.Base(r.Path()), run)
	if err := readInto(in, r, session.BucketTopology, f, &in.Topology); err != nil {
		return f, err
	}
	if err := readInto(in, r, session.BucketProxies, f, &in.Proxies); err != nil {
		return f, err
	}
	if err := readInto(in, r, session.BucketHopConns, f, &in.HopConns); err != nil {
		return f, err
	}
	if err := readInto(in, r, session.BucketFaults, f, &in.Faults); err != nil {
		return f, err
	}
	captures, err := r.Captures()
	if err != nil {
		return f, err
	}
	for _, c := range captures {
		in.Captures = append(in.Captures, Rec[session.CaptureInfo]{f, c})
	}
	if err := readInto(in, r, session.BucketFlows, f, &in.Flows); err != nil {
		return f, err
	}
	if err := in.readKernel(r, f); err != nil {
		return f, err
	}
	if errors {
		if err := readInto(in, r, session.BucketConns, f, &in.Conns); err != nil {
			return f, err
		}
		if err := readInto(in, r, session.BucketErrors, f, &in.Errors); err != nil {
			return f, err
		}
	}
	return f, nil
}

func readInto[T any](in *Input, r *session.Reader, bucket string, file int, dst *[]Rec[T]) error {
	skipped, err := session.DecodeEach(r, bucket, func(v *T) error {
		*dst = append(*dst, Rec[T]{file, *v})
		return nil
	})
	in.skip(file, bucket, skipped)
	return err
}

// skip counts records of a file's bucket that were left out.
func (in *Input) skip(file int, bucket string, u session.Unreadable) {
	if u.Records == 0 {
		return
	}
	if in.Skipped == nil {
		in.Skipped = map[int]map[string]session.Unreadable{}
	}
	if in.Skipped[file] == nil {
		in.Skipped[file] = map[string]session.Unreadable{}
	}
	prev := in.Skipped[file][bucket]
	if prev.Records == 0 {
		prev.First = u.First
	}
	prev.Records += u.Records
	in.Skipped[file][bucket] = prev
}

// AddCapture adds a capture read from a pcap file (capture.ReadFile) with
// its flows, as a file of its own.
func (in *Input) AddCapture(info session.CaptureInfo, flows []session.Flow) {
	f := in.AddFile(info.ID, session.RunInfo{Command: "capture analyze", Host: info.Host})
	in.Captures = append(in.Captures, Rec[session.CaptureInfo]{f, info})
	for _, fl := range flows {
		fl.Capture = info.ID
		in.Flows = append(in.Flows, Rec[session.Flow]{f, fl})
	}
}

// readKernel reads a file's kernel reset events and its collector's
// meta record.
func (in *Input) readKernel(r *session.Reader, f int) error {
	var info session.KernelInfo
	ok, err := r.Meta(session.MetaKernel, &info)
	switch {
	case err != nil && stderrors.Is(err, session.ErrDamaged):
		return fmt.Errorf("%s: kernel info: %w", r.Path(), err)
	case err != nil:
		in.skip(f, session.BucketMeta, session.Unreadable{Records: 1, First: "key \"kernel\": " + err.Error()})
	case ok:
		in.KernelInfo = append(in.KernelInfo, Rec[session.KernelInfo]{f, info})
	}
	skipped, err := session.DecodeEach(r, session.BucketKernelEvents, func(v *session.KernelEvent) error {
		if v.Event == session.KernelSendReset || v.Event == session.KernelReceiveReset {
			in.Kernel = append(in.Kernel, Rec[session.KernelEvent]{f, *v})
		}
		return nil
	})
	in.skip(f, session.BucketKernelEvents, skipped)
	return err
}

// AddKernel adds kernel events and their collector's info gathered
// without a session file (capture with no --out) to file.
func (in *Input) AddKernel(file int, info session.KernelInfo, events []session.KernelEvent) {
	in.KernelInfo = append(in.KernelInfo, Rec[session.KernelInfo]{file, info})
	for _, ev := range events {
		if ev.Event == session.KernelSendReset || ev.Event == session.KernelReceiveReset {
			in.Kernel = append(in.Kernel, Rec[session.KernelEvent]{file, ev})
		}
	}
}
