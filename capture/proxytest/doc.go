// Package proxytest checks the capture's attribution against the real
// ssestress proxy (package proxy): its HopConn and FaultEvent records and
// its sockets. It is a package of its own so that capture itself never
// depends on proxy; it holds tests only.
package proxytest
