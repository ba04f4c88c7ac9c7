// Package tlsutil builds the TLS configurations of ssestress: the client
// side (a CA file to trust, or no verification) and the server side (a
// certificate and key, or a certificate generated at start whose PEM can be
// written out for clients to trust).
//
// Certificates enter as PEM files or are generated here; they leave as
// *tls.Config values and, for a generated one, as PEM bytes.
package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/ssestress/ssestress/internal/inputfile"
	"github.com/ssestress/ssestress/internal/outfile"
)

// Errors of the package. They name options by the fields of ClientOptions
// and ServerOptions (Option), never by a command's flags: the command that
// owns the flag names it (ssestress tail --ca, proxy --upstream-ca).
var (
	// ErrNoServerCert: a TLS listener was asked for without a certificate;
	// a *MissingError is it too.
	ErrNoServerCert = errors.New("a TLS listener needs a certificate and its key, or a self-signed certificate")
	// ErrConflict: options that exclude each other were given together;
	// a *ConflictError is it too.
	ErrConflict = errors.New("conflicting TLS options")
)

// Option names a field of ClientOptions or ServerOptions in errors, for the
// caller to map onto its flag or config key.
type Option string

// The options errors can name.
const (
	OptCAFile     Option = "CAFile"
	OptInsecure   Option = "Insecure"
	OptCertFile   Option = "CertFile"
	OptKeyFile    Option = "KeyFile"
	OptSelfSigned Option = "SelfSigned"
	OptCertOut    Option = "CertOut"
)

// OptionError is a failure caused by one option's value: a file that does
// not read or holds no certificate.
type OptionError struct {
	Option Option
	Err    error
}

func (e *OptionError) Error() string { return e.Err.Error() }
func (e *OptionError) Unwrap() error { return e.Err }

// NoCertsError: a PEM file holds no certificate.
type NoCertsError struct {
	Path string // "" for PEM bytes that came from no file
}

func (e *NoCertsError) Error() string {
	if e.Path == "" {
		return "no PEM certificate"
	}
	return e.Path + " holds no PEM certificate"
}

// ConflictError: options A and B were both given and exclude each other;
// Why says how.
type ConflictError struct {
	A, B Option
	Why  string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s and %s exclude each other: %s", e.A, e.B, e.Why)
}

// Is makes a ConflictError match ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// MissingError: Given was set without Missing, which it needs.
type MissingError struct {
	Given, Missing Option
}

func (e *MissingError) Error() string { return fmt.Sprintf("%s needs %s", e.Given, e.Missing) }

// Is makes a MissingError match ErrNoServerCert.
func (e *MissingError) Is(target error) bool { return target == ErrNoServerCert }

// DefaultValidity is how long a generated certificate is valid: longer
// than the longest run (72 h), short enough not to be mistaken for a real
// one.
const DefaultValidity = 30 * 24 * time.Hour

// DefaultHosts are the names a generated certificate is valid for when no
// others are given: every way a loopback client may address the server.
var DefaultHosts = []string{"127.0.0.1", "::1", "localhost"}

// SelfSigned generates an ECDSA P-256 certificate that is its own CA, valid
// for hosts (IP addresses or DNS names; DefaultHosts when empty) for
// validFor (DefaultValidity when zero or negative). It returns the
// certificate ready for a tls.Config and its PEM encoding, which clients
// load with --ca.
func SelfSigned(hosts []string, validFor time.Duration) (tls.Certificate, []byte, error) {
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	if validFor <= 0 {
		validFor = DefaultValidity
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"ssestress"}, CommonName: "ssestress self-signed"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	cert, certPEM, _, err := selfSign(tmpl, validFor)
	return cert, certPEM, err
}

// NewCA generates an ECDSA P-256 certificate authority named commonName,
// valid for validFor (DefaultValidity when zero or negative), that signs
// server certificates (and no other CA): the certificate ready for
// signing, its PEM (what clients trust) and its private key as PEM (PKCS
// #8), a secret the caller must keep as one.
func NewCA(commonName string, validFor time.Duration) (cert tls.Certificate, certPEM, keyPEM []byte, err error) {
	if validFor <= 0 {
		validFor = DefaultValidity
	}
	tmpl := &x509.Certificate{
		Subject:        pkix.Name{Organization: []string{"ssestress"}, CommonName: commonName},
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		MaxPathLenZero: true,
	}
	return selfSign(tmpl, validFor)
}

// selfSign completes tmpl as a CA valid for validFor from an hour ago (for
// clocks a little behind), signs it with a new ECDSA P-256 key, and
// returns it with its PEM and its key's PEM.
func selfSign(tmpl *x509.Certificate, validFor time.Duration) (tls.Certificate, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("generate serial: %w", err)
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(validFor)
	tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, certPEM, keyPEM, nil
}

// ServerOptions say where a TLS listener's certificate comes from. Exactly
// one source is used: CertFile and KeyFile, or SelfSigned.
type ServerOptions struct {
	CertFile, KeyFile string
	// SelfSigned generates a certificate at start for Hosts.
	SelfSigned bool
	// Hosts are the names a generated certificate is valid for
	// (DefaultHosts when empty).
	Hosts []string
	// CertOut, when set, receives the generated certificate's PEM so that
	// clients can trust it (ssestress tail --ca CertOut). It is written
	// with mode 0644, never over an existing file (an *outfile.ExistsError
	// in the OptionError) unless CertOutForce.
	CertOut      string
	CertOutForce bool
}

// Enabled reports whether the options ask for TLS at all.
func (o ServerOptions) Enabled() bool {
	return o.SelfSigned || o.CertFile != "" || o.KeyFile != ""
}

// ServerConfig returns the tls.Config of a listener that speaks HTTP/2 and
// HTTP/1.1 (ALPN "h2", "http/1.1"), and the certificate's PEM when it was
// generated (nil otherwise).
func ServerConfig(o ServerOptions) (*tls.Config, []byte, error) {
	var (
		cert    tls.Certificate
		certPEM []byte
		err     error
	)
	switch {
	case o.SelfSigned && (o.CertFile != "" || o.KeyFile != ""):
		other := OptCertFile
		if o.CertFile == "" {
			other = OptKeyFile
		}
		return nil, nil, &ConflictError{A: OptSelfSigned, B: other, Why: "one generates the certificate, the other loads one: give one or the other"}
	case o.SelfSigned:
		cert, certPEM, err = SelfSigned(o.Hosts, 0)
		if err != nil {
			return nil, nil, err
		}
		if o.CertOut != "" {
			if err := outfile.WriteFile(o.CertOut, certPEM, 0o644, o.CertOutForce); err != nil {
				return nil, nil, &OptionError{Option: OptCertOut, Err: fmt.Errorf("write certificate: %w", err)}
			}
		}
	case o.CertFile == "" && o.KeyFile == "":
		return nil, nil, ErrNoServerCert
	case o.KeyFile == "":
		return nil, nil, &MissingError{Given: OptCertFile, Missing: OptKeyFile}
	case o.CertFile == "":
		return nil, nil, &MissingError{Given: OptKeyFile, Missing: OptCertFile}
	default:
		if o.CertOut != "" {
			return nil, nil, &ConflictError{A: OptCertOut, B: OptCertFile,
				Why: "the one writes a generated certificate; with the other the clients already have " + o.CertFile}
		}
		cert, err = loadKeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, nil, &OptionError{Option: OptCertFile, Err: fmt.Errorf("load certificate %s / key %s: %w", o.CertFile, o.KeyFile, err)}
		}
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
		MinVersion:   tls.VersionTLS12,
	}, certPEM, nil
}

// ClientOptions are the client side's TLS flags.
type ClientOptions struct {
	// CAFile holds PEM certificates trusted besides the system roots
	// (--ca): a self-signed server's certificate, or a private CA.
	CAFile string
	// Insecure skips verification of the server's certificate (--insecure).
	Insecure bool
	// ServerName overrides the name checked against the certificate
	// (default: the URL's host).
	ServerName string
}

// ClientConfig returns the tls.Config for https targets: the system roots
// (so public HTTPS services work out of the box), plus CAFile's
// certificates, or no verification at all with Insecure. It returns nil
// (Go's defaults) when no option is set.
func ClientConfig(o ClientOptions) (*tls.Config, error) {
	if o.CAFile != "" && o.Insecure {
		return nil, &ConflictError{A: OptCAFile, B: OptInsecure, Why: "the one trusts a certificate, the other trusts any: give one or the other"}
	}
	if o.CAFile == "" && !o.Insecure && o.ServerName == "" {
		return nil, nil
	}
	cfg := &tls.Config{ServerName: o.ServerName, InsecureSkipVerify: o.Insecure}
	if o.CAFile != "" {
		pool, err := CertPool(o.CAFile)
		if err != nil {
			return nil, &OptionError{Option: OptCAFile, Err: err}
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// MaxPEMSize caps a PEM file read (a CA bundle, a certificate, a key): a
// system's whole CA bundle is a few hundred KiB.
const MaxPEMSize = 4 << 20

// loadKeyPair is tls.LoadX509KeyPair with each file read under MaxPEMSize
// (a FIFO or /dev/zero given by mistake must not hang or fill the memory).
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := inputfile.ReadFile(certFile, MaxPEMSize)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := inputfile.ReadFile(keyFile, MaxPEMSize)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// CertPool returns the system roots plus the PEM certificates of path. A
// file without one is a *NoCertsError.
func CertPool(path string) (*x509.CertPool, error) {
	raw, err := inputfile.ReadFile(path, MaxPEMSize)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(raw) {
		return nil, &NoCertsError{Path: path}
	}
	return pool, nil
}

// PoolOf returns a pool holding the PEM certificates certPEM (no system
// roots): how an in-process client trusts a server generated in the same
// process.
func PoolOf(certPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		return nil, &NoCertsError{}
	}
	return pool, nil
}
