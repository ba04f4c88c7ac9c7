package proxy

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/ssestress/ssestress/internal/tlsutil"
)

// MITMConfig configures the recording of TLS inside forward mode's CONNECT
// tunnels. It is part of Config (its keys are Config's).
type MITMConfig struct {
	// MITM terminates TLS inside CONNECT tunnels to allowed hosts with a
	// certificate for the tunnel's target signed by a CA the clients
	// trust, records the streams like any other and re-encrypts them
	// toward the target (verified as an https upstream is: UpstreamCA,
	// UpstreamInsecure). Without it such a tunnel passes through
	// unrecorded and is counted (ProxyInfo.UnrecordedTunnels).
	MITM bool `json:"mitm,omitempty"`
	// MITMCA is "CERT,KEY": the PEM files of the CA to sign with. Empty:
	// a CA is generated at start (MITMCAOut).
	MITMCA string `json:"mitm-ca,omitempty"`
	// MITMCAOut is where a generated CA is written: its certificate to
	// this file (mode 0644: clients trust it, e.g. NODE_EXTRA_CA_CERTS or
	// ssestress --ca) and its private key to MITMKeyFile of it (mode 0600:
	// a secret, to reuse the CA with MITMCA). Neither is ever overwritten.
	// Empty: the generated CA stays in memory (MITMCACertPEM).
	MITMCAOut string `json:"mitm-ca-out,omitempty"`
}

// MITMKeyFile is the file a generated CA's private key is written to, for
// its certificate's file certFile: "ca.pem" gives "ca-key.pem".
func MITMKeyFile(certFile string) string {
	return strings.TrimSuffix(certFile, ".pem") + "-key.pem"
}

// mitmCA signs the certificates the proxy presents inside tunnels.
type mitmCA struct {
	ca      tls.Certificate
	certPEM []byte // the CA's certificate, for clients

	mu     sync.Mutex
	leaves map[string]*tls.Certificate // by host
}

// setupMITM loads or generates the CA of cfg.
func (p *Proxy) setupMITM(cfg MITMConfig) error {
	switch {
	case !cfg.MITM && (cfg.MITMCA != "" || cfg.MITMCAOut != ""):
		return fmt.Errorf("%w: --mitm-ca and --mitm-ca-out go with --mitm", ErrBadConfig)
	case !cfg.MITM:
		return nil
	case len(p.allow) == 0:
		return fmt.Errorf("%w: --mitm records the TLS of forward mode's CONNECT tunnels: give --allow-host", ErrBadConfig)
	case cfg.MITMCA != "" && cfg.MITMCAOut != "":
		return fmt.Errorf("%w: --mitm-ca-out writes a generated CA; with --mitm-ca the clients already trust %s", ErrBadConfig, cfg.MITMCA)
	}
	m := &mitmCA{leaves: map[string]*tls.Certificate{}}
	if cfg.MITMCA != "" {
		certFile, keyFile, ok := strings.Cut(cfg.MITMCA, ",")
		if !ok || certFile == "" || keyFile == "" {
			return fmt.Errorf("%w: --mitm-ca %q must be CERT,KEY (two PEM files)", ErrBadConfig, cfg.MITMCA)
		}
		ca, err := tls.LoadX509KeyPair(strings.TrimSpace(certFile), strings.TrimSpace(keyFile))
		if err != nil {
			return fmt.Errorf("%w: --mitm-ca: %v", ErrBadConfig, err)
		}
		if ca.Leaf == nil || !ca.Leaf.IsCA {
			return fmt.Errorf("%w: --mitm-ca: %s is not a CA certificate (basic constraints CA:TRUE)", ErrBadConfig, certFile)
		}
		m.ca = ca
		m.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate[0]})
	} else {
		name := fmt.Sprintf("ssestress proxy %s MITM CA %s", p.name, time.Now().UTC().Format("2006-01-02T15:04:05Z"))
		ca, certPEM, keyPEM, err := tlsutil.NewCA(name, 365*24*time.Hour)
		if err != nil {
			return fmt.Errorf("proxy --mitm: %w", err)
		}
		if cfg.MITMCAOut != "" {
			if err := writeNew(cfg.MITMCAOut, certPEM, 0o644); err != nil {
				return fmt.Errorf("%w: --mitm-ca-out: %v", ErrBadConfig, err)
			}
			if err := writeNew(MITMKeyFile(cfg.MITMCAOut), keyPEM, 0o600); err != nil {
				os.Remove(cfg.MITMCAOut)
				return fmt.Errorf("%w: --mitm-ca-out: %v", ErrBadConfig, err)
			}
		}
		m.ca, m.certPEM = ca, certPEM
	}
	p.tunnels.mitm = m
	return nil
}

// MITMCACertPEM is the certificate of the CA that signs inside tunnels
// (--mitm), what clients trust; nil without --mitm.
func (p *Proxy) MITMCACertPEM() []byte {
	if p.tunnels.mitm == nil {
		return nil
	}
	return p.tunnels.mitm.certPEM
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists (it is never overwritten; reuse a CA with --mitm-ca CERT,KEY)", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// serverConfig is the TLS configuration the proxy presents inside a tunnel
// to target ("host:port"): a certificate for the target's host alone (the
// tunnel reaches nothing else, whatever name the client asks for), signed
// by the CA with goproxy's signer, HTTP/1.1.
func (m *mitmCA) serverConfig(p *Proxy, target string) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		host = target
	}
	host = strings.Trim(host, "[]")
	m.mu.Lock()
	defer m.mu.Unlock()
	leaf := m.leaves[host]
	if leaf == nil {
		cfg, err := goproxy.TLSConfigFromCA(&m.ca)(host, &goproxy.ProxyCtx{Proxy: p.gp})
		if err != nil {
			return nil, err
		}
		if len(cfg.Certificates) == 0 {
			return nil, errors.New("goproxy's signer returned no certificate")
		}
		leaf = &cfg.Certificates[0]
		m.leaves[host] = leaf
	}
	return &tls.Config{Certificates: []tls.Certificate{*leaf}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}, nil
}
