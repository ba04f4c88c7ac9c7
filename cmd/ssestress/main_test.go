package main

import (
	"os"
	"path/filepath"
	"testing"
)

// testMainEnv makes the test binary act as ssestress itself (main), so
// tests can run it as a process: to see its exit code after a signal, or
// to let a shell's completion script call it.
const testMainEnv = "SSESTRESS_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(testMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// ssestressOnPath puts an ssestress on a fresh PATH directory that runs
// this test binary as main, and returns the directory.
func ssestressOnPath(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := "#!/bin/sh\n" + testMainEnv + "=1 exec '" + exe + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "ssestress"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
