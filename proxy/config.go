package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/inputfile"
	"github.com/ssestress/ssestress/internal/size"
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
	UpstreamHeaderTimeout json.RawMessage `json:"upstream-header-timeout"` // a duration with a unit; "0" = no limit
	MaxEventSize          json.RawMessage `json:"max-event-size"`          // bytes, or a string such as "1MB" or "1MiB"
	Keepalive             json.RawMessage `json:"keepalive"`               // a duration with a unit; "0" = off
}

// configKeys lists the config file's keys for messages.
const configKeys = "listen, upstream, name, allow-host, fault, on-upstream-error, time-scale, api, api-token, " +
	"tls-cert, tls-key, tls-self-signed, tls-cert-out, upstream-ca, upstream-insecure, upstream-header-timeout, max-event-size, keepalive"

// LoadConfig reads a proxy config file: one JSON object whose keys are the
// flags' names (see configKeys), each fault a string in the --fault syntax
// or an object of the same keys. Durations are strings with a unit ("30s");
// a bare number is refused with both of its readings (20000 could be 20 s
// or 5 h 33 min). Sizes are bytes or strings with a unit: "1MB" is
// 1,000,000 bytes, "1MiB" 1,048,576. Decoding is strict: an unknown key,
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
	// duration reads a duration key; zero is "off", negative in Config.
	duration := func(key string, raw json.RawMessage, dst *time.Duration, zero string) error {
		if raw := bytes.TrimSpace(raw); len(raw) == 0 || string(raw) == "null" {
			return nil
		}
		var d dur.Duration
		if err := d.UnmarshalJSON(raw); err != nil {
			var bare *dur.BareNumberError
			if errors.As(err, &bare) {
				return fmt.Errorf("%s:%d: %w: %q: %s — %s", name, keyLine(key), ErrBadConfig, key, bare.Text, bare.Hint())
			}
			return fmt.Errorf("%s:%d: %w: %q: %v (e.g. \"30s\"; \"0\" for %s)", name, keyLine(key), ErrBadConfig, key, err, zero)
		}
		*dst = time.Duration(d)
		if d == 0 {
			*dst = -1
		}
		return nil
	}
	if err := duration("upstream-header-timeout", fc.UpstreamHeaderTimeout, &cfg.UpstreamHeaderTimeout, "no limit"); err != nil {
		return Config{}, err
	}
	if err := duration("keepalive", fc.Keepalive, &cfg.Keepalive, "off"); err != nil {
		return Config{}, err
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
// "64KB" (64,000 bytes) or "64KiB" (65,536), as internal/size reads it.
func sizeValue(raw json.RawMessage) (int64, error) {
	var n size.Bytes
	if err := n.UnmarshalJSON(raw); err != nil {
		return 0, err
	}
	return int64(n), nil
}
