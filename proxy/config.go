package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
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
}

// LoadConfig reads a proxy config file: one JSON object whose keys are the
// flags' names (listen, upstream, name, allow-host, fault, on-upstream-
// error, time-scale, api, api-token), each fault a string in the --fault
// syntax or an object of the same keys. Decoding is strict: an unknown key,
// a bad value or trailing data is an error naming the file and the line.
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > MaxConfigSize {
		return Config{}, fmt.Errorf("%s: larger than %d bytes", path, MaxConfigSize)
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
		return fmt.Errorf("%s:%d: %w: unknown key %s (keys: listen, upstream, name, allow-host, fault, on-upstream-error, time-scale, api, api-token)",
			name, lineAt(data, bytes.Index(data, []byte(k))), ErrBadConfig, k)
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
