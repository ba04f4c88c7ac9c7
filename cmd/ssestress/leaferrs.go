package main

import (
	"errors"
	"fmt"

	"github.com/ssestress/ssestress/internal/limits"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/tlsutil"
)

// The leaves return typed errors that name no flag; the functions here let
// the command that owns a flag name it. None of them edits an error's text:
// each builds its line from the typed error's fields, or wraps it.

// tlsFlags names a command's flags for tlsutil's options.
type tlsFlags map[tlsutil.Option]string

// clientTLSFlags are the request flags' names (run, tail, replay run, bisect).
var clientTLSFlags = tlsFlags{tlsutil.OptCAFile: "--ca", tlsutil.OptInsecure: "--insecure"}

// serverTLSFlags are a listener's (serve, proxy).
var serverTLSFlags = tlsFlags{
	tlsutil.OptCertFile: "--tls-cert", tlsutil.OptKeyFile: "--tls-key",
	tlsutil.OptSelfSigned: "--tls-self-signed", tlsutil.OptCertOut: "--tls-cert-out",
}

// with returns the union of two name maps.
func (f tlsFlags) with(g tlsFlags) tlsFlags {
	out := tlsFlags{}
	for k, v := range f {
		out[k] = v
	}
	for k, v := range g {
		out[k] = v
	}
	return out
}

// explain turns a typed tlsutil error into a usage error naming the flags
// (a bad value of a flag is a bad command line: exit 2); other errors are
// returned as they are.
func (f tlsFlags) explain(err error) error {
	name := func(o tlsutil.Option) string {
		if n, ok := f[o]; ok {
			return n
		}
		return string(o)
	}
	var (
		ce *tlsutil.ConflictError
		me *tlsutil.MissingError
		oe *tlsutil.OptionError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return usageErrorf("%s and %s exclude each other: %s", name(ce.A), name(ce.B), ce.Why)
	case errors.As(err, &me):
		return usageErrorf("%s needs %s", name(me.Given), name(me.Missing))
	case errors.As(err, &oe):
		return badValue(name(oe.Option), oe.Err)
	case errors.Is(err, tlsutil.ErrNoServerCert):
		return usageErrorf("TLS needs %s and %s, or %s", name(tlsutil.OptCertFile), name(tlsutil.OptKeyFile), name(tlsutil.OptSelfSigned))
	}
	return err
}

// sessionExists explains session.ErrExists with the flag that named the
// file; other errors are returned as they are.
func sessionExists(err error, flagName string) error {
	if errors.Is(err, session.ErrExists) {
		// A bad value of the flag (exit 2): session files are never
		// replaced, --force or not.
		return &usageError{msg: fmt.Sprintf("%v (choose another %s, or remove it)", err, flagName), err: err}
	}
	return err
}

// sessionWriteError explains an error the session writer reports while a
// producer runs: past the size limit it names --max-file-size.
func sessionWriteError(err error, producer string) error {
	var full *session.FullError
	if errors.As(err, &full) {
		return fmt.Errorf("session file %s reached --max-file-size (%d bytes): recording stopped, %d records dropped so far; the %s goes on",
			full.Path, full.MaxSize, full.Dropped, producer)
	}
	return err
}

// descriptorsPerStream is what one stream of a run holds in this process:
// the client's socket, the embedded server's side of it (no --target), and
// the in-process proxy's two (--via-proxy: the accepted client hop and the
// dialed upstream hop).
func descriptorsPerStream(embedded, viaProxy bool) int {
	n := 1
	if embedded {
		n++
	}
	if viaProxy {
		n += 2
	}
	return n
}

// checkCapacity refuses a run that cannot hold its connections (perConn
// descriptors each: descriptorsPerStream), naming the flags that help
// besides the system's limit.
func checkCapacity(conns, perConn int) error {
	err := limits.CheckCapacity(conns, perConn)
	var ce *limits.CapacityError
	if !errors.As(err, &ce) {
		return err
	}
	if perConn > 2 { // the in-process proxy's two sockets per stream
		return fmt.Errorf("%w (%d descriptors per stream, two of them the in-process proxy's); or use fewer --connections, split the run with --shard, or run the proxy as a process of its own (ssestress proxy) and give --target",
			err, perConn)
	}
	return fmt.Errorf("%w; or use fewer --connections, split the run with --shard, or give --target so the server runs in another process", err)
}
