package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/proxy"
)

// mitmFlags are ssestress proxy's flags for recording the TLS inside
// forward mode's CONNECT tunnels (proxy.MITMConfig).
type mitmFlags struct {
	on      bool
	ca, out string
}

func (m *mitmFlags) register(fs *flagSet) {
	fs.BoolVar(&m.on, "mitm", false, "forward mode: terminate the TLS inside CONNECT tunnels to --allow-host targets with a CA the clients trust, record the streams and re-encrypt them to the target (without it such tunnels pass unrecorded, and are counted)")
	fs.StringVar(&m.ca, "mitm-ca", "", "with --mitm: the CA to sign with, `CERT,KEY` (PEM files); default: one generated at start and written to --mitm-ca-out")
	fs.StringVar(&m.out, "mitm-ca-out", "", "with --mitm: write the generated CA's certificate to `FILE` for the clients to trust, and its private key (mode 0600) beside it as FILE-key.pem; never overwritten (default: <session file>-mitm-ca.pem)")
	fs.values(files(), "mitm-ca-out")
}

// apply puts the flags given into cfg (they override the config file) and
// names the generated CA's file after the session file when nothing else
// does.
func (m *mitmFlags) apply(cfg *proxy.Config, set map[string]bool, sessionPath string) {
	if set["mitm"] {
		cfg.MITM = m.on
	}
	if set["mitm-ca"] {
		cfg.MITMCA = m.ca
	}
	if set["mitm-ca-out"] {
		cfg.MITMCAOut = m.out
	}
	if cfg.MITM && cfg.MITMCA == "" && cfg.MITMCAOut == "" {
		cfg.MITMCAOut = strings.TrimSuffix(sessionPath, ".db") + "-mitm-ca.pem"
	}
}

// printMITM says, at start, which CA signs inside tunnels and what the
// clients must trust. The private key's contents are never printed.
func printMITM(w io.Writer, cfg proxy.Config) {
	switch {
	case !cfg.MITM:
		if len(cfg.AllowHosts) > 0 {
			fmt.Fprintf(w, "  CONNECT tunnels: plain HTTP recorded; TLS passed through unrecorded and counted (--mitm records it)\n")
		}
	case cfg.MITMCA != "":
		cert, _, _ := strings.Cut(cfg.MITMCA, ",")
		fmt.Fprintf(w, "  CONNECT tunnels: TLS terminated with the CA %s (clients trust it), recorded, re-encrypted to the target\n", cert)
	default:
		fmt.Fprintf(w, "  CONNECT tunnels: TLS terminated with a CA generated now, recorded, re-encrypted to the target\n")
		fmt.Fprintf(w, "  MITM CA certificate %s (clients trust it: NODE_EXTRA_CA_CERTS=%s, or --ca %s); its key %s (mode 0600; reuse with --mitm-ca %s,%s)\n",
			cfg.MITMCAOut, cfg.MITMCAOut, cfg.MITMCAOut, proxy.MITMKeyFile(cfg.MITMCAOut), cfg.MITMCAOut, proxy.MITMKeyFile(cfg.MITMCAOut))
	}
}

// unrecordedRows are the proxy summary's rows for tunnels it passed through
// unrecorded (none when there were none).
func unrecordedRows(p session.ProxyInfo) [][]string {
	if len(p.UnrecordedTunnels) == 0 {
		return nil
	}
	targets := make([]string, 0, len(p.UnrecordedTunnels))
	var total int64
	for t, n := range p.UnrecordedTunnels {
		targets = append(targets, t+" ×"+strconv.FormatInt(n, 10))
		total += n
	}
	sort.Strings(targets)
	return [][]string{{"tunnels not recorded", fmt.Sprintf("%d (TLS without --mitm): %s", total, strings.Join(targets, ", "))}}
}
