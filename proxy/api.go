package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// The control API: JSON over HTTP on its own listener (Config.API).
//
//	GET    /faults              {"faults": [FaultSpec...]}; each can be POSTed back as it is
//	POST   /faults              body: a fault (string or object form, or a FaultSpec as listed): 201 and the FaultSpec
//	GET    /faults/{name}       the FaultSpec
//	PUT    /faults/{name}       body: a fault: replaces it, keeping the name
//	DELETE /faults/{name}       204
//	GET    /conns               {"conns": [ConnInfo...]}: live hop connections
//	GET    /events              text/event-stream of ConnEvent (event: open|peer-close|close|fault)
//	GET    /stats               Stats
//	GET    /kinds               the fault kinds and presets
//	GET    /recording           {"enabled", "streams", "frames"}
//	POST   /recording/start     start recording (the proxy needs a recorder: --record)
//	POST   /recording/stop      stop recording
//
// Beside it, Toxiproxy 2.5's API (toxiproxy_api.go): /version, /proxies,
// /proxies/{name}, /proxies/{name}/toxics[/{toxic}], /reset, /populate.
//
// Errors are {"error": message, "status": code} with that HTTP status (as
// Toxiproxy's). With a token, every request needs "Authorization: Bearer
// TOKEN". As Toxiproxy's, the API refuses browsers (a User-Agent starting
// with "Mozilla/": 403), so a web page cannot drive a loopback API.

// ErrAPIListen is returned by Start when the control API cannot listen on
// its address.
var ErrAPIListen = errors.New("control API listen")

// APIError is the body of every error response of the control API.
type APIError struct {
	Message string `json:"error"`
	Status  int    `json:"status"`
}

func (e *APIError) Error() string { return e.Message }

// ConnInfo is a live hop connection as the control API lists it: its
// HopConn record so far, its age and idle time (seconds, as every duration
// in the JSON of ssestress), and the faults attached.
type ConnInfo struct {
	session.HopConn
	Age     session.Seconds `json:"age_s"`
	Idle    session.Seconds `json:"idle_s"`
	Applied []string        `json:"applied"`
}

// Conns lists the live hop connections, by connection id and hop.
func (p *Proxy) Conns() []ConnInfo {
	now := time.Now()
	var out []ConnInfo
	for _, h := range p.liveConns() {
		out = append(out, ConnInfo{
			HopConn: h.record(),
			Age:     session.Seconds(now.Sub(h.open)),
			Idle:    session.Seconds(now.Sub(h.lastActivity(DirBoth))),
			Applied: h.applied(),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.ConnID != b.ConnID {
			return connIDLess(a.ConnID, b.ConnID)
		}
		if a.Hop != b.Hop {
			return a.Hop == session.HopClient
		}
		return a.Request < b.Request
	})
	return out
}

// connIDLess orders "p-2" before "p-10".
func connIDLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

type apiServer struct {
	p      *Proxy
	reg    *registry // the process's proxies, p first (Toxiproxy's API)
	ln     net.Listener
	srv    *http.Server
	digest [32]byte // sha256 of the token
	ctx    context.Context
	cancel context.CancelFunc
}

func startAPI(p *Proxy, cfg Config, addr string) (*apiServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAPIListen, err)
	}
	a := &apiServer{p: p, ln: ln, reg: newRegistry(p, cfg)}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if p.token != "" {
		a.digest = sha256.Sum256([]byte(p.token))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /faults", a.listFaults)
	mux.HandleFunc("POST /faults", a.addFault)
	mux.HandleFunc("GET /faults/{name...}", a.getFault)
	mux.HandleFunc("PUT /faults/{name...}", a.updateFault)
	mux.HandleFunc("DELETE /faults/{name...}", a.removeFault)
	mux.HandleFunc("GET /conns", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"conns": nonNil(p.Conns())})
	})
	mux.HandleFunc("GET /events", a.streamEvents)
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, p.Stats()) })
	mux.HandleFunc("GET /kinds", a.listKinds)
	mux.HandleFunc("GET /recording", a.recordingState)
	mux.HandleFunc("POST /recording/start", func(w http.ResponseWriter, r *http.Request) { a.setRecording(w, true) })
	mux.HandleFunc("POST /recording/stop", func(w http.ResponseWriter, r *http.Request) { a.setRecording(w, false) })
	a.toxiproxyRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	a.srv = &http.Server{Handler: a.auth(mux), ReadHeaderTimeout: 10 * time.Second}
	go a.srv.Serve(ln)
	return a, nil
}

// close stops the API and the proxies it added.
func (a *apiServer) close() {
	a.cancel()
	a.srv.Close()
	a.reg.closeAdded()
}

// auth refuses browsers and checks the bearer token in constant time
// (digests of equal length, so neither the content nor the length of the
// token leaks).
func (a *apiServer) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.UserAgent(), "Mozilla/") {
			writeError(w, http.StatusForbidden, "browsers may not use the control API (User-Agent Mozilla/...), as Toxiproxy's: a web page must not change faults")
			return
		}
		if a.p.token == "" {
			next.ServeHTTP(w, r)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		d := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(d[:], a.digest[:]) != 1 || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ssestress proxy"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong API token (send Authorization: Bearer TOKEN)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, &APIError{Message: msg, Status: code})
}

// errorStatus maps the package's errors onto HTTP statuses.
func errorStatus(err error) int {
	switch {
	case errors.Is(err, ErrNoFault):
		return http.StatusNotFound
	case errors.Is(err, ErrFaultExists):
		return http.StatusConflict
	case errors.Is(err, ErrBadFault):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (a *apiServer) listFaults(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"faults": nonNil(a.p.Faults())})
}

func (a *apiServer) findFault(name string) (FaultSpec, bool) {
	for _, f := range a.p.Faults() {
		if f.Name == name {
			return f, true
		}
	}
	return FaultSpec{}, false
}

func (a *apiServer) getFault(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	f, ok := a.findFault(name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no fault named %q", name))
		return
	}
	writeJSON(w, http.StatusOK, f)
}

// readSpec decodes a request body holding one fault.
func readSpec(r *http.Request) (FaultSpec, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return FaultSpec{}, fmt.Errorf("%w: reading the body: %v", ErrBadFault, err)
	}
	var spec FaultSpec
	if err := json.Unmarshal(body, &spec); err != nil {
		if errors.Is(err, ErrBadFault) {
			return FaultSpec{}, err
		}
		return FaultSpec{}, fmt.Errorf("%w: %v (send a fault as a JSON string such as \"reset:after=5s\" or an object such as {\"kind\": \"reset\", \"after\": \"5s\"})", ErrBadFault, err)
	}
	return spec, nil
}

func (a *apiServer) addFault(w http.ResponseWriter, r *http.Request) {
	spec, err := readSpec(r)
	if err == nil {
		err = a.p.AddFault(spec)
	}
	if err != nil {
		writeError(w, errorStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, spec)
}

func (a *apiServer) updateFault(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	spec, err := readSpec(r)
	if err == nil {
		err = a.p.UpdateFault(name, spec)
	}
	if err != nil {
		writeError(w, errorStatus(err), err.Error())
		return
	}
	f, _ := a.findFault(name)
	writeJSON(w, http.StatusOK, f)
}

func (a *apiServer) removeFault(w http.ResponseWriter, r *http.Request) {
	if err := a.p.RemoveFault(r.PathValue("name")); err != nil {
		writeError(w, errorStatus(err), err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *apiServer) listKinds(w http.ResponseWriter, r *http.Request) {
	type kindInfo struct {
		Name    string            `json:"name"`
		Summary string            `json:"summary"`
		Keys    map[string]string `json:"keys"`
	}
	type presetInfo struct {
		Name    string   `json:"name"`
		Summary string   `json:"summary"`
		Faults  []string `json:"faults"`
	}
	var ks []kindInfo
	for _, n := range KindNames() {
		k := kinds[n]
		keys := map[string]string{}
		for _, kd := range k.keys {
			keys[kd.name] = kd.doc
		}
		ks = append(ks, kindInfo{n, k.summary, keys})
	}
	var ps []presetInfo
	for _, n := range PresetNames() {
		ps = append(ps, presetInfo{n, presets[n].summary, presets[n].faults})
	}
	writeJSON(w, http.StatusOK, map[string]any{"kinds": ks, "presets": ps})
}

func (a *apiServer) recordingState(w http.ResponseWriter, r *http.Request) {
	rec := a.p.recorder
	streams, frames := rec.Counts()
	writeJSON(w, http.StatusOK, map[string]any{"available": rec != nil, "enabled": rec.Enabled(), "streams": streams, "frames": frames})
}

func (a *apiServer) setRecording(w http.ResponseWriter, on bool) {
	rec := a.p.recorder
	if rec == nil {
		writeError(w, http.StatusConflict, "this proxy has no recorder: start it with --record FILE")
		return
	}
	rec.SetEnabled(on)
	streams, frames := rec.Counts()
	writeJSON(w, http.StatusOK, map[string]any{"available": true, "enabled": rec.Enabled(), "streams": streams, "frames": frames})
}

// streamEvents serves the connection events as SSE, with a heartbeat.
func (a *apiServer) streamEvents(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	events, stop := a.p.events.subscribe()
	defer stop()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	sse.WriteComment(w, "ssestress proxy "+a.p.name+" connection events")
	flusher.Flush()
	heartbeat := time.NewTicker(15 * time.Second)
	defer heartbeat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-a.ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			data, _ := json.Marshal(ev)
			if sse.WriteEvent(w, "", ev.Type, string(data)) != nil {
				return
			}
		case <-heartbeat.C:
			if sse.WriteComment(w, "heartbeat") != nil {
				return
			}
		}
		flusher.Flush()
	}
}
