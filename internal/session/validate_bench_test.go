package session_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// benchFile is a session file of about SSESTRESS_VALIDATE_MB megabytes
// (default 64) of 1 KiB error records, written once by session.Writer.
var benchFile struct {
	once sync.Once
	path string
	size int64
	err  error
}

func validateBenchFile(b *testing.B) (string, int64) {
	benchFile.once.Do(func() {
		mb := 64
		if v, err := strconv.Atoi(os.Getenv("SSESTRESS_VALIDATE_MB")); err == nil && v > 0 {
			mb = v
		}
		dir, err := os.MkdirTemp("", "ssestress-validate-bench-")
		if err != nil {
			benchFile.err = err
			return
		}
		path := filepath.Join(dir, "big.db")
		w, err := session.Create(path, session.Options{BatchSize: 5000})
		if err != nil {
			benchFile.err = err
			return
		}
		msg := strings.Repeat("read tcp 127.0.0.1:40000->127.0.0.1:8090: read: connection reset by peer ", 13)
		start := time.Now()
		for i := range mb * 1024 {
			w.Put(session.ErrorRecord{Time: start.Add(time.Duration(i)), ConnID: fmt.Sprintf("c%07d", i), Class: "ECONNRESET", Message: msg})
			if i%20000 == 0 {
				w.Flush()
			}
		}
		if benchFile.err = w.Close(); benchFile.err != nil {
			return
		}
		st, err := os.Stat(path)
		benchFile.path, benchFile.size, benchFile.err = path, st.Size(), err
	})
	if benchFile.err != nil {
		b.Fatal(benchFile.err)
	}
	return benchFile.path, benchFile.size
}

// BenchmarkValidate measures Validate on a real session file (page cache
// warm) and reports seconds per GB of file. The README's figure:
//
//	SSESTRESS_VALIDATE_MB=1024 go test -run '^$' -bench 'Validate|Open' -benchtime 5x ./internal/session/
func BenchmarkValidate(b *testing.B) {
	path, size := validateBenchFile(b)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		if err := session.Validate(f, path, size); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/(float64(size)/(1<<30)), "s/GiB")
}

// BenchmarkValidateKeyOrder is ValidateKeyOrder (every key read: what
// bbolt's check and a writer appending need) on the same file.
func BenchmarkValidateKeyOrder(b *testing.B) {
	path, size := validateBenchFile(b)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		if err := session.ValidateKeyOrder(f, path, size); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/(float64(size)/(1<<30)), "s/GiB")
}

// BenchmarkOpen is session.Open (validation, then bbolt's open and the
// schema check) on the same file, for the share validation takes.
func BenchmarkOpen(b *testing.B) {
	path, size := validateBenchFile(b)
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		r, err := session.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/(float64(size)/(1<<30)), "s/GiB")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchFile.path != "" {
		os.RemoveAll(filepath.Dir(benchFile.path))
	}
	os.Exit(code)
}
