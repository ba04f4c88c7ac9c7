package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"

	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/inputfile"
	"github.com/ssestress/ssestress/internal/redact"
	"github.com/ssestress/ssestress/internal/tlsutil"
)

// requestFlags are the flags that make a client's requests look like
// production's: extra headers, cookies, a bearer token, TLS trust and
// HTTP/2. run and tail register them; replay run and bisect can too.
type requestFlags struct {
	headers stringList
	cookies stringList
	// The secrets' twins: files and environment variables holding header
	// lines and cookies (secrets.go).
	headerFiles, headerEnvs stringList
	cookieFile, cookieEnv   string
	tokenFile               string
	tokenEnv                string
	insecure                bool
	ca                      string
	http2                   bool
}

// register adds the flags to fs.
func (r *requestFlags) register(fs *flagSet) {
	fs.Var(&r.headers, "header", "extra request `HEADER` as 'Name: value' (repeatable); a credential header here is visible in the process list: use --header-file or --header-env")
	fs.Var(&r.headerFiles, "header-file", "`FILE` of extra request headers, one 'Name: value' per line ('#' comments; repeatable); never printed or recorded")
	fs.Var(&r.headerEnvs, "header-env", "environment `VARIABLE` holding extra request headers, 'Name: value' lines (repeatable)")
	fs.Var(&r.cookies, "cookie", "`COOKIE` 'name=value' sent with every request (repeatable, or 'a=1; b=2'); recorded redacted; visible in the process list: use --cookie-file or --cookie-env")
	fs.StringVar(&r.cookieFile, "cookie-file", "", "`FILE` holding the cookies ('a=1; b=2', or one per line)")
	fs.StringVar(&r.cookieEnv, "cookie-env", "", "environment `VARIABLE` holding the cookies ('a=1; b=2')")
	fs.StringVar(&r.tokenFile, "token-file", "", "`FILE` holding a bearer token, sent as 'Authorization: Bearer ...'; never printed or recorded")
	fs.StringVar(&r.tokenEnv, "token-env", "", "environment `VARIABLE` holding a bearer token; never printed or recorded")
	fs.BoolVar(&r.insecure, "insecure", false, "do not verify the server's TLS certificate")
	fs.StringVar(&r.ca, "ca", "", "PEM `FILE` of certificates to trust besides the system roots (e.g. what serve --tls-cert-out wrote)")
	fs.BoolVar(&r.http2, "http2", false, "HTTP/2: streams to a host share one connection, as browsers do (h2 over TLS, h2c for http://)")
	fs.values(files(), "token-file", "ca", "header-file", "cookie-file")
	fs.values(wordsOf(environNames), "token-env", "header-env", "cookie-env")
}

// environNames are the names of the environment's variables (for
// completing --token-env).
func environNames() []string {
	var names []string
	for _, kv := range os.Environ() {
		if name, _, ok := strings.Cut(kv, "="); ok && name != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// requestSetup is what the flags make: the headers every request carries,
// the transport, and the secrets that must never be printed or recorded.
type requestSetup struct {
	header    http.Header
	tlsConfig *tls.Config // nil: Go's defaults (system roots)
	http2     bool
	h2        *clients.HTTP2 // with --http2
	transport clients.Transport
	secrets   []string
}

// redactedValue replaces a credential in args and messages; the same marker
// recordings use.
const redactedValue = redact.Marker

// sensitiveHeader reports whether a header's value is a credential
// (redact.Header: the standard ones, and any name that says token, key,
// secret, auth, session, password or credential).
func sensitiveHeader(name string) bool { return redact.Header(name) }

// errTokenConflict: two sources for the Authorization header.
var errTokenConflict = errors.New("give the credential once: --token-file, --token-env or --header 'Authorization: ...'")

// build checks the flags and makes the setup. Its errors never contain a
// credential.
func (r *requestFlags) build() (*requestSetup, error) {
	h, err := parseHeaderFlags(r.headers)
	if err != nil {
		return nil, err
	}
	// The twins' headers: the same 'Name: value' lines, from files and
	// the environment.
	var twinLines []string
	for _, f := range r.headerFiles {
		lines, err := readSecretLines("--header-file "+f, f, "")
		if err != nil {
			return nil, err
		}
		twinLines = append(twinLines, lines...)
	}
	for _, e := range r.headerEnvs {
		lines, err := readSecretLines("--header-env "+e, "", e)
		if err != nil {
			return nil, err
		}
		twinLines = append(twinLines, lines...)
	}
	if len(twinLines) > 0 {
		th, err := parseHeaderFlags(twinLines)
		if err != nil {
			return nil, fmt.Errorf("--header-file/--header-env: %v", strings.TrimPrefix(err.Error(), "--header "))
		}
		for name, vs := range th {
			h[name] = append(h[name], vs...)
		}
	}
	cookies := r.cookies
	if r.cookieFile != "" || r.cookieEnv != "" {
		if r.cookieFile != "" && r.cookieEnv != "" {
			return nil, errors.New("give --cookie-file or --cookie-env, not both")
		}
		name := "--cookie-file " + r.cookieFile
		if r.cookieEnv != "" {
			name = "--cookie-env " + r.cookieEnv
		}
		lines, err := readSecretLines(name, r.cookieFile, r.cookieEnv)
		if err != nil {
			return nil, err
		}
		cookies = append(append(stringList(nil), cookies...), lines...)
	}
	s := &requestSetup{header: h, http2: r.http2}
	for name, values := range h {
		if sensitiveHeader(name) {
			for _, v := range values {
				s.addSecret(v)
				if _, cred, ok := strings.Cut(v, " "); ok {
					s.addSecret(strings.TrimSpace(cred)) // "Bearer xyz": xyz alone too
				}
			}
		}
	}

	if len(cookies) > 0 {
		if h.Get("Cookie") != "" {
			return nil, errors.New("give cookies with --cookie or with --header 'Cookie: ...', not both")
		}
		var pairs []string
		for _, c := range cookies {
			for _, part := range strings.Split(c, ";") {
				part = strings.TrimSpace(part)
				if part == "" {
					continue
				}
				name, value, ok := strings.Cut(part, "=")
				name = strings.TrimSpace(name)
				if !ok || name == "" || strings.ContainsAny(name, " \t\r\n,\"") || strings.ContainsAny(value, "\r\n") {
					return nil, fmt.Errorf("--cookie: %q is not 'name=value'", name+"="+redactedValue)
				}
				s.addSecret(strings.TrimSpace(value))
				pairs = append(pairs, name+"="+strings.TrimSpace(value))
			}
		}
		if len(pairs) == 0 {
			return nil, errors.New("--cookie: no 'name=value' given")
		}
		h.Set("Cookie", strings.Join(pairs, "; "))
	}

	if r.tokenFile != "" && r.tokenEnv != "" {
		return nil, errTokenConflict
	}
	// maxTokenFileSize caps --token-file (it may be <(pass show …)).
	const maxTokenFileSize = 64 << 10
	token := ""
	switch {
	case r.tokenFile != "":
		raw, err := inputfile.ReadFile(r.tokenFile, maxTokenFileSize)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(raw))
		if err := checkToken(token); err != nil {
			return nil, fmt.Errorf("--token-file %s: %v", r.tokenFile, err)
		}
	case r.tokenEnv != "":
		v, ok := os.LookupEnv(r.tokenEnv)
		if !ok {
			return nil, fmt.Errorf("--token-env: environment variable %s is not set", r.tokenEnv)
		}
		token = strings.TrimSpace(v)
		if err := checkToken(token); err != nil {
			return nil, fmt.Errorf("--token-env %s: %v", r.tokenEnv, err)
		}
	}
	if token != "" {
		if h.Get("Authorization") != "" {
			return nil, errTokenConflict
		}
		s.addSecret(token)
		h.Set("Authorization", "Bearer "+token)
	}

	s.tlsConfig, err = tlsutil.ClientConfig(tlsutil.ClientOptions{CAFile: r.ca, Insecure: r.insecure})
	if err != nil {
		return nil, clientTLSFlags.explain(err)
	}
	if r.http2 {
		s.h2 = &clients.HTTP2{TLSConfig: s.tlsConfig}
		s.transport = s.h2
	} else if s.tlsConfig != nil {
		s.transport = &clients.HTTP1{TLSConfig: s.tlsConfig}
	}
	return s, nil
}

// checkToken refuses an empty token or one that cannot be a header value,
// without ever quoting it.
func checkToken(token string) error {
	if token == "" {
		return errors.New("the token is empty")
	}
	for _, c := range token {
		if c < 0x20 || c == 0x7f {
			return errors.New("the token contains a control character (a line break in the middle?)")
		}
	}
	return nil
}

// addSecret remembers a value to scrub from messages. Values shorter than
// four bytes are not scrubbed: replacing them would garble every message
// and they protect nothing.
func (s *requestSetup) addSecret(v string) {
	if len(v) >= 4 {
		s.secrets = append(s.secrets, v)
	}
}

// redact replaces every secret in msg.
func (s *requestSetup) redact(msg string) string {
	for _, sec := range s.secrets {
		msg = strings.ReplaceAll(msg, sec, redactedValue)
	}
	return msg
}

// probe is the pre-flight check with the clients' TLS settings; a TLS
// refusal says how to trust the server.
// what names the target in the message ("target " for run).
func (s *requestSetup) probe(ctx context.Context, what, target string) error {
	err := clients.ProbeWith(ctx, target, probeTimeout, clients.ProbeOptions{TLSConfig: s.tlsConfig, HTTP2: s.http2})
	if err == nil {
		return nil
	}
	class := errclass.Classify(err)
	hint := ""
	if class == errclass.TLS && !errors.Is(err, clients.ErrNoHTTP2) && (s.tlsConfig == nil || !s.tlsConfig.InsecureSkipVerify) {
		hint = "; trust its certificate with --ca FILE, or skip verification with --insecure"
	}
	return fmt.Errorf("cannot reach %s%s: %s (%s%s)", what, redactURL(target), s.redact(err.Error()), class, hint)
}

// close releases the transport's idle shared connections.
func (s *requestSetup) close() {
	if s.h2 != nil {
		s.h2.CloseIdleConnections()
	}
}

// redactURL hides the credentials of a URL: the password of its user
// info and the values of credential query parameters (token, api_key,
// sig, ...).
func redactURL(raw string) string { return redact.URL(raw) }

// urlFlags are the flags whose values are URLs.
var urlFlags = map[string]bool{"target": true, "upstream": true, "entry": true}

// redactArgs returns args with every credential replaced: the values of
// secret flags (--api-token, --cookie, credential --header values),
// passwords and credential query parameters in URLs, credential name=value
// pairs anywhere, and every value in secrets. It is what a session file's
// RunInfo.Args holds.
func redactArgs(args []string, secrets []string) []string {
	out := make([]string, len(args))
	copy(out, args)
	for i := 0; i < len(out); i++ {
		a := out[i]
		if a == "--" {
			for j := i + 1; j < len(out); j++ {
				out[j] = redactPositional(out[j])
			}
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			out[i] = redactPositional(a)
			continue
		}
		name, value, inline := strings.Cut(strings.TrimLeft(a, "-"), "=")
		fix := func(v string) string {
			switch {
			case secretFlagNames[name]:
				return redactedValue
			case name == "header":
				n, _, ok := strings.Cut(v, ":")
				if ok && sensitiveHeader(strings.TrimSpace(n)) {
					return n + ": " + redactedValue
				}
			case name == "cookie":
				var parts []string
				for _, p := range strings.Split(v, ";") {
					n, _, _ := strings.Cut(strings.TrimSpace(p), "=")
					if n != "" {
						parts = append(parts, n+"="+redactedValue)
					}
				}
				return strings.Join(parts, "; ")
			case urlFlags[name]:
				return redact.URL(v)
			}
			return redact.Text(v)
		}
		switch {
		case inline:
			out[i] = a[:len(a)-len(value)] + fix(value)
		case (secretFlagNames[name] || valuedFlagNames[name]) && i+1 < len(out):
			out[i+1] = fix(out[i+1])
			i++
		}
	}
	for i := range out {
		for _, sec := range secrets {
			if sec != "" {
				out[i] = strings.ReplaceAll(out[i], sec, redactedValue)
			}
		}
	}
	return out
}

// redactPositional redacts an argument that is a URL (tail's); file names
// are kept as they are.
func redactPositional(a string) string {
	if strings.Contains(a, "://") {
		return redact.URL(a)
	}
	return a
}

// valuedFlagNames are the flags whose next word redactArgs reads as their
// value (besides the secret ones): those that may carry a credential.
var valuedFlagNames = map[string]bool{"header": true, "cookie": true, "target": true, "upstream": true, "entry": true}

// trust adds a certificate generated in this process (the embedded
// server's) to the roots the clients verify with, and rebuilds the
// transport on the new configuration.
func (s *requestSetup) trust(certPEM []byte) error {
	cfg := s.tlsConfig.Clone()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if !cfg.InsecureSkipVerify {
		pool := cfg.RootCAs
		if pool == nil {
			pool = x509.NewCertPool()
		} else {
			pool = pool.Clone()
		}
		if !pool.AppendCertsFromPEM(certPEM) {
			return errors.New("embedded server: generated certificate does not parse")
		}
		cfg.RootCAs = pool
	}
	s.tlsConfig = cfg
	if s.http2 {
		s.h2 = &clients.HTTP2{TLSConfig: cfg}
		s.transport = s.h2
	} else {
		s.transport = &clients.HTTP1{TLSConfig: cfg}
	}
	return nil
}
