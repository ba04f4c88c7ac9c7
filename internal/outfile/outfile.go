// Package outfile creates the files commands write (a report, an export,
// a certificate, a graph): never over an existing file unless the caller
// says so (the command's --force), and never half-written. The content
// goes to a temporary file beside the target; Commit puts it in place
// with a hard link, which fails rather than replace a file that appeared
// meanwhile (or with a rename, which replaces, when forced); a failed
// command removes the temporary file and leaves the target as it was.
package outfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrExists is matched (errors.Is) by an *ExistsError.
var ErrExists = errors.New("already exists")

// ExistsError is an output file that is already there. The command that
// owns the flag names it and says how to replace it (--force).
type ExistsError struct{ Path string }

func (e *ExistsError) Error() string        { return e.Path + " already exists" }
func (e *ExistsError) Is(target error) bool { return target == ErrExists }

// Check refuses an existing path unless force: the check a command makes
// before its work, so it fails before spending any. Commit checks again.
func Check(path string, force bool) error {
	if force {
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			return fmt.Errorf("%s is a directory", path)
		}
		return nil
	}
	if _, err := os.Lstat(path); err == nil {
		return &ExistsError{Path: path}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// File is an output being written: an *os.File on a temporary file in
// the target's directory.
type File struct {
	*os.File
	path  string
	force bool
	done  bool
}

// Create starts writing path (mode perm): it refuses an existing path
// unless force, and creates the temporary file the content goes to.
func Create(path string, perm os.FileMode, force bool) (*File, error) {
	if err := Check(path, force); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	return &File{File: tmp, path: path, force: force}, nil
}

// Path is the file's final name.
func (f *File) Path() string { return f.path }

// Commit closes the file and puts it in place: beside an existing file it
// fails with an *ExistsError (the temporary file is removed), unless
// forced.
func (f *File) Commit() error {
	if f.done {
		return nil
	}
	f.done = true
	tmp := f.File.Name()
	if err := f.File.Sync(); err != nil {
		f.File.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.File.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if f.force {
		if err := os.Rename(tmp, f.path); err != nil {
			os.Remove(tmp)
			return err
		}
		return nil
	}
	err := os.Link(tmp, f.path)
	if err == nil {
		return os.Remove(tmp)
	}
	if errors.Is(err, os.ErrExist) {
		os.Remove(tmp)
		return &ExistsError{Path: f.path}
	}
	// A file system without hard links: make the name exclusively, then
	// rename over the empty placeholder.
	ph, perr := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if perr != nil {
		os.Remove(tmp)
		if errors.Is(perr, os.ErrExist) {
			return &ExistsError{Path: f.path}
		}
		return perr
	}
	ph.Close()
	if err := os.Rename(tmp, f.path); err != nil {
		os.Remove(tmp)
		os.Remove(f.path)
		return err
	}
	return nil
}

// Abort closes and removes the temporary file: the target is untouched.
// Safe after Commit.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.File.Name())
}

// WriteFile writes data to path as Create and Commit do.
func WriteFile(path string, data []byte, perm os.FileMode, force bool) error {
	f, err := Create(path, perm, force)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}
