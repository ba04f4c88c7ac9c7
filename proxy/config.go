package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/inputfile"
)

// MaxConfigSize bounds a config file.
const MaxConfigSize = 1 << 20

// fileConfig is the config file: the keys of Config that a file may set,
// named like the flags. Faults stay raw so an error can name the fault.
type fileConfig struct {
	Listen          string            `json:"listen"`
	Upstream        string            `json:"upstream"`
	Name            string            `json:"name"`
	AllowHosts      []string          `json:"allow-host"`
	Faults          []json.RawMessage `json:"fault"`
	OnUpstreamError string            `json:"on-upstream-error"`
	TimeScale       float64           `json:"time-scale"`
	API             string            `json:"api"`
	APIToken        string            `json:"api-token"`

	TLSCert               string          `json:"tls-cert"`
	TLSKey                string          `json:"tls-key"`
	TLSSelfSigned         bool            `json:"tls-self-signed"`
	TLSCertOut            string          `json:"tls-cert-out"`
	UpstreamCA            string          `json:"upstream-ca"`
	UpstreamInsecure      bool            `json:"upstream-insecure"`
	UpstreamHeaderTimeout string          `json:"upstream-header-timeout"` // a duration; "0" = no limit
	MaxEventSize          json.RawMessage `json:"max-event-size"`          // bytes, or a string such as "1MB"
}

// configKeys lists the config file's keys for messages.
const configKeys = "listen, upstream, name, allow-host, fault, on-upstream-error, time-scale, api, api-token, " +
	"tls-cert, tls-key, tls-self-signed, tls-cert-out, upstream-ca, upstream-insecure, upstream-header-timeout, max-event-size"

// LoadConfig reads a proxy config file: one JSON object whose keys are the
// flags' names (see configKeys), each fault a string in the --fault syntax
// or an object of the same keys. Decoding is strict: an unknown key,
// a bad value or trailing data is an error naming the file and the line.
func LoadConfig(path string) (Config, error) {
	data, err := inputfile.ReadFile(path, MaxConfigSize)
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes config file data; name is used in messages.
func ParseConfig(name string, data []byte) (Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var fc fileConfig
	if err := dec.Decode(&fc); err != nil {
		return Config{}, configError(name, data, dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Config{}, fmt.Errorf("%s:%d: %w: data after the config object", name, lineAt(data, int(dec.InputOffset())), ErrBadConfig)
	}
	cfg := Config{
		Listen: fc.Listen, Upstream: fc.Upstream, Name: fc.Name, AllowHosts: fc.AllowHosts,
		OnUpstreamError: fc.OnUpstreamError, TimeScale: fc.TimeScale, API: fc.API, APIToken: fc.APIToken,
		TLSCert: fc.TLSCert, TLSKey: fc.TLSKey, TLSSelfSigned: fc.TLSSelfSigned, TLSCertOut: fc.TLSCertOut,
		UpstreamCA: fc.UpstreamCA, UpstreamInsecure: fc.UpstreamInsecure,
	}
	keyLine := func(key string) int { return lineAt(data, bytes.Index(data, []byte(`"`+key+`"`))) }
	if v := fc.UpstreamHeaderTimeout; v != "" {
		d, err := dur.Parse(v)
		if err != nil || d < 0 {
			return Config{}, fmt.Errorf("%s:%d: %w: upstream-header-timeout %q is not a duration (e.g. \"30s\"; \"0\" for no limit)", name, keyLine("upstream-header-timeout"), ErrBadConfig, v)
		}
		cfg.UpstreamHeaderTimeout = d
		if d == 0 {
			cfg.UpstreamHeaderTimeout = -1
		}
	}
	if raw := bytes.TrimSpace(fc.MaxEventSize); len(raw) > 0 && string(raw) != "null" {
		n, err := sizeValue(raw)
		if err != nil {
			return Config{}, fmt.Errorf("%s:%d: %w: max-event-size: %v", name, keyLine("max-event-size"), ErrBadConfig, err)
		}
		cfg.MaxEventSize = n
	}
	for i, raw := range fc.Faults {
		var spec FaultSpec
		if err := json.Unmarshal(raw, &spec); err != nil {
			line := lineAt(data, bytes.Index(data, raw))
			return Config{}, fmt.Errorf("%s:%d: fault %d: %w", name, line, i+1, err)
		}
		cfg.Faults = append(cfg.Faults, spec)
	}
	return cfg, nil
}

// configError names the line of a decoding error.
func configError(name string, data []byte, dec *json.Decoder, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("%s:%d: %w: %v", name, lineAt(data, int(syn.Offset)), ErrBadConfig, syn)
	case errors.As(err, &typ):
		return fmt.Errorf("%s:%d: %w: key %q must be %s, not %s", name, lineAt(data, int(typ.Offset)), ErrBadConfig, typ.Field, typ.Type, typ.Value)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%s: %w: empty file (want a JSON object)", name, ErrBadConfig)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s: %w: unexpected end of file", name, ErrBadConfig)
	}
	msg := err.Error()
	if k, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Errorf("%s:%d: %w: unknown key %s (keys: %s)",
			name, lineAt(data, bytes.Index(data, []byte(k))), ErrBadConfig, k, configKeys)
	}
	return fmt.Errorf("%s:%d: %w: %v", name, lineAt(data, int(dec.InputOffset())), ErrBadConfig, err)
}

// lineAt is the 1-based line of a byte offset.
func lineAt(data []byte, off int) int {
	if off < 0 {
		return 1
	}
	off = min(off, len(data))
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// sizeValue reads a byte count given as a JSON number or a string such as
// "64KB" (1 KB = 1024 bytes, as in the faults' keys).
func sizeValue(raw json.RawMessage) (int64, error) {
	var n int64
	if err := json.Unmarshal(raw, &n); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%d is negative", n)
		}
		return n, nil
	}
	var text string
	if err := json.Unmarshal(raw, &text); err != nil {
		return 0, fmt.Errorf("%s is not a byte count (a number, or a string such as \"1MB\")", raw)
	}
	return parseBytes(text)
}
