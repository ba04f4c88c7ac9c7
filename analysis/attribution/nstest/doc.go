// Package nstest checks the attribution engine end to end, in the layouts
// users have: real ssestress processes per hop (run, proxy, capture, serve,
// built once per test run), servers that reset or die, clients that abort,
// routers in network namespaces that forge resets or lose a NAT's state,
// and captures inside different namespaces read together. Each case checks
// the first sentence of the table report and the verdict of report
// --format json, with and without the packets. It holds tests only; they
// need root (network namespaces, iptables, conntrack, packet capture) and
// skip with a message elsewhere.
package nstest
