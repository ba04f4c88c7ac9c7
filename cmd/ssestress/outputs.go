package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/internal/outfile"
)

// Files are never destroyed. Every file a command writes is new unless
// the command offers --force and it is given:
//
//   - renderings and exports (report -o, report --graphs files, bisect -o,
//     recordings export -o) and certificates for clients (serve and proxy
//     --tls-cert-out) are refused when they exist, replaced with --force;
//   - session files (--out, --record), pcaps (--pcap) and the MITM CA's
//     key (--mitm-ca-out) are evidence or secrets: never replaced, --force
//     or not (remove them yourself);
//   - default names are fresh (a -2, -3 ... suffix), so they never collide.
//
// Outputs are written through internal/outfile: to a temporary file beside
// the target, put in place only when complete, so a failed command leaves
// the old file (or none) and never half a file.

// forceUsage is the usage of every command's --force.
const forceUsage = "replace output files that exist (%s); session files and pcaps are never replaced"

// outputError names the flag of an output file that exists (exit 2, with
// how to replace it), or wraps another failure to write it.
func outputError(cmd, flagName string, err error) error {
	var ee *outfile.ExistsError
	if errors.As(err, &ee) {
		return &usageError{msg: fmt.Sprintf("%s: %s %s already exists (give --force to replace it)", cmd, flagName, ee.Path), err: err}
	}
	return fmt.Errorf("%s: %s: %w", cmd, flagName, err)
}

// checkNew refuses an output that is never replaced (a pcap, a session
// file) when it exists: a bad value of its flag.
func checkNew(cmd, flagName, path string) error {
	if _, err := os.Lstat(path); err == nil {
		return usageErrorf("%s: %s %s already exists (it is never overwritten: choose another %s, or remove it)", cmd, flagName, path, flagName)
	}
	return nil
}

// checkOutput refuses an output that exists before any work is done.
func checkOutput(cmd, flagName, path string, force bool) error {
	if path == "" {
		return nil
	}
	if err := outfile.Check(path, force); err != nil {
		return outputError(cmd, flagName, err)
	}
	return nil
}

// writeOutput writes data to path, never over an existing file unless
// force.
func writeOutput(cmd, flagName, path string, data []byte, force bool) error {
	if err := outfile.WriteFile(path, data, 0o644, force); err != nil {
		return outputError(cmd, flagName, err)
	}
	return nil
}

// writeGraphs writes each graph of rep as DIR/<id>.svg. Every file is
// checked before the first is written: without force an existing one
// stops the command with none written.
func writeGraphs(cmd, dir string, rep *analysis.Report, force bool) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: --graphs: %w", cmd, err)
	}
	for _, g := range rep.Graphs {
		if err := checkOutput(cmd, "--graphs", filepath.Join(dir, g.ID+".svg"), force); err != nil {
			return nil, err
		}
	}
	var paths []string
	for _, g := range rep.Graphs {
		p := filepath.Join(dir, g.ID+".svg")
		f, err := outfile.Create(p, 0o644, force)
		if err != nil {
			return paths, outputError(cmd, "--graphs", err)
		}
		if err := analysis.WriteSVG(f, g); err != nil {
			f.Abort()
			return paths, fmt.Errorf("%s: --graphs: %s: %w", cmd, p, err)
		}
		if err := f.Commit(); err != nil {
			return paths, outputError(cmd, "--graphs", err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}
