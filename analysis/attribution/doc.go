// Package attribution answers who ended each connection, on which hop, and
// why: the one engine behind capture analyze, report, bisect and the lines
// run, proxy and replay run print when they stop.
//
// Evidence enters as raw records of any number of session files and
// captures (Input: ReadFile for a session file, AddCapture for the flows of
// a pcap file), never as an earlier attribution: the resets bucket is a
// cache this package writes (StoreCache) and never reads. New builds the
// picture once:
//
//   - the topology from every file: endpoints, each proxy's ProxyInfo
//     (listener, upstream, keepalive, upstream-error policy) and the
//     addresses of its hop records. A proxy's listener is that proxy in
//     every file; an address only ever sent to (a target) is taken for
//     the server, and said to be taken so.
//   - connections: each TCP connection once, whatever saw it. The proxies'
//     hop records, the captures' flows and the clients' errors are joined
//     by their 4-tuples (the upstream socket of proxy A is the client
//     socket of proxy B), across a NAT by the initial sequence numbers,
//     and across captures on different hosts after aligning their clocks
//     by the packets they share. A RST seen by several captures is one
//     segment.
//   - per connection, what ended it (decide): the ending acts (RST and FIN
//     segments, the proxies' records of their sockets, fault firings)
//     ranked by what they prove. Packets decide who sent a segment; a
//     segment in an endpoint's name that its stack did not send (TTL off,
//     the sender kept sending, its own record says it was reset, no twin
//     on a capture nearer to it) is a middlebox's. A fault firing or a hop
//     record outranks inference, and a capture never overrides a proxy's
//     own record of its own socket: where they disagree it is said
//     (Conflicts). A RST that answers at once the first segment after a
//     silence, from a peer that had sent neither FIN nor RST, means that
//     peer no longer knew the connection: state was lost between the hops.
//
// Each incident (a client's error, or, where no client recorded anything,
// a proxy's client connection that ended in a reset or a cut) is then
// followed inward (explain): through every proxy that passed the ending
// on (its --on-upstream-error policy), to the root cause: an injected
// fault, an endpoint, a middlebox, or lost state. Explanations are grouped
// (Tally) into the verdict, whose first sentence is the answer.
//
// Kernel evidence (session.KernelEvent: a 4-tuple, a time, the sending or
// receiving host's stack, the kernel's reason and the task) joins as one
// more observation of a segment, beside a captured packet (kernel.go):
// each event once per host, joined by 4-tuple and time to its connection;
// it proves the sender's stack sent the segment, says why and in which
// process, and ranks first for who and why (EvidenceKernel). A refused
// connect, which has no local address, is joined to the kernel's
// NO_SOCKET answer from the address it was refused at, at that moment.
package attribution
