package capture

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// packetOutgoing is PACKET_OUTGOING, the packet type of a frame this host
// sends. On loopback every packet is delivered twice, once outgoing and once
// incoming; the filter keeps only the incoming copy, as libpcap does.
const packetOutgoing = 4

// maxFilterPorts bounds the ports of one filter: each costs two
// instructions per direction and BPF jumps reach at most 255 ahead.
const maxFilterPorts = 60

// Frame offsets of an Ethernet frame without VLAN tag (loopback frames
// carry a 14-byte Ethernet header with zero addresses).
const (
	offEtherType = 12
	offIP        = 14
)

// buildFilter assembles the classic BPF program of a capture: TCP over
// IPv4 or IPv6 with either port in ports (every TCP packet when ports is
// empty), non-first IPv4 fragments excluded, and, when dropOutgoing is set
// (loopback), the outgoing copy of each packet dropped. Accepted packets are
// cut to snaplen bytes.
func buildFilter(ports []int, dropOutgoing bool, snaplen int) ([]bpf.Instruction, error) {
	if len(ports) > maxFilterPorts {
		return nil, fmt.Errorf("capture filter: %d ports, at most %d", len(ports), maxFilterPorts)
	}
	for _, p := range ports {
		if p <= 0 || p > 65535 {
			return nil, fmt.Errorf("capture filter: port %d out of range 1-65535", p)
		}
	}
	var a assembler
	if dropOutgoing {
		a.emit(bpf.LoadExtension{Num: bpf.ExtType})
		a.jumpEq(packetOutgoing, "drop", "")
	}
	a.emit(bpf.LoadAbsolute{Off: offEtherType, Size: 2})
	a.jumpEq(0x0800, "ipv4", "")
	a.jumpEq(0x86dd, "ipv6", "drop")

	a.label("ipv4")
	a.emit(bpf.LoadAbsolute{Off: offIP + 9, Size: 1}) // protocol
	a.jumpEq(6, "", "drop")
	a.emit(bpf.LoadAbsolute{Off: offIP + 6, Size: 2}) // flags and fragment offset
	a.jumpSet(0x1fff, "drop", "")
	a.emit(bpf.LoadMemShift{Off: offIP}) // X = IPv4 header length
	if len(ports) == 0 {
		a.jump("accept")
	} else {
		a.emit(bpf.LoadIndirect{Off: offIP, Size: 2}) // source port
		a.portChecks(ports)
		a.emit(bpf.LoadIndirect{Off: offIP + 2, Size: 2}) // destination port
		a.portChecks(ports)
		a.jump("drop")
	}

	a.label("ipv6")
	a.emit(bpf.LoadAbsolute{Off: offIP + 6, Size: 1}) // next header: TCP right after the fixed header
	a.jumpEq(6, "", "drop")
	if len(ports) == 0 {
		a.jump("accept")
	} else {
		a.emit(bpf.LoadAbsolute{Off: offIP + 40, Size: 2})
		a.portChecks(ports)
		a.emit(bpf.LoadAbsolute{Off: offIP + 42, Size: 2})
		a.portChecks(ports)
		a.jump("drop")
	}

	a.label("accept")
	a.emit(bpf.RetConstant{Val: uint32(snaplen)})
	a.label("drop")
	a.emit(bpf.RetConstant{Val: 0})
	return a.resolve()
}

// assembler is a tiny two-pass BPF assembler with named labels, so the
// filter reads as a program rather than as hand-counted skips.
type assembler struct {
	ins    []bpf.Instruction
	fixups []fixup
	labels map[string]int
}

// fixup is a jump whose targets are labels ("" = the next instruction).
type fixup struct {
	at                    int
	always                bool
	trueLabel, falseLabel string
}

func (a *assembler) emit(in bpf.Instruction) { a.ins = append(a.ins, in) }

func (a *assembler) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.ins)
}

func (a *assembler) jump(to string) {
	a.fixups = append(a.fixups, fixup{at: len(a.ins), always: true, trueLabel: to})
	a.emit(bpf.Jump{})
}

func (a *assembler) jumpEq(val uint32, ifTrue, ifFalse string) {
	a.fixups = append(a.fixups, fixup{at: len(a.ins), trueLabel: ifTrue, falseLabel: ifFalse})
	a.emit(bpf.JumpIf{Cond: bpf.JumpEqual, Val: val})
}

func (a *assembler) jumpSet(mask uint32, ifTrue, ifFalse string) {
	a.fixups = append(a.fixups, fixup{at: len(a.ins), trueLabel: ifTrue, falseLabel: ifFalse})
	a.emit(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: mask})
}

// portChecks accepts when the loaded port is one of ports and falls
// through otherwise.
func (a *assembler) portChecks(ports []int) {
	for _, p := range ports {
		a.jumpEq(uint32(p), "accept", "")
	}
}

func (a *assembler) resolve() ([]bpf.Instruction, error) {
	skip := func(from int, label string) (uint32, error) {
		if label == "" {
			return 0, nil
		}
		to, ok := a.labels[label]
		if !ok {
			return 0, fmt.Errorf("capture filter: no label %q", label)
		}
		n := to - from - 1
		if n < 0 || n > 255 {
			return 0, fmt.Errorf("capture filter: jump to %q out of reach (%d)", label, n)
		}
		return uint32(n), nil
	}
	for _, f := range a.fixups {
		t, err := skip(f.at, f.trueLabel)
		if err != nil {
			return nil, err
		}
		if f.always {
			a.ins[f.at] = bpf.Jump{Skip: t}
			continue
		}
		e, err := skip(f.at, f.falseLabel)
		if err != nil {
			return nil, err
		}
		in := a.ins[f.at].(bpf.JumpIf)
		in.SkipTrue, in.SkipFalse = uint8(t), uint8(e)
		a.ins[f.at] = in
	}
	return a.ins, nil
}
