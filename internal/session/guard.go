package session

import (
	"fmt"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
)

// View runs fn in a read transaction of the file. It is bbolt's DB.View
// with a guard: Open validated the file, so bbolt should never read
// outside it, but if it does (the file changed under it, or damage the
// validator does not know), the fault becomes a panic
// (debug.SetPanicOnFault) and any panic inside the transaction becomes an
// error wrapping ErrDamaged that names the file, never a crash. Every
// Reader method reads through it; consumers that walk the database
// themselves should too, rather than DB().View.
func (r *Reader) View(fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Path: r.path, Value: p}
		}
	}()
	return r.db.View(fn)
}

// PanicError is View's error when reading the file panicked or faulted:
// damage the validator did not catch (or a bug in a reader's callback).
// It wraps ErrDamaged.
type PanicError struct {
	Path  string
	Value any // what was recovered
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("%s %v: reading it failed: %v", e.Path, ErrDamaged, e.Value)
}

func (e *PanicError) Unwrap() error { return ErrDamaged }

// validateKeyOrder runs ValidateKeyOrder on the Reader's file (the one
// Open validated and bbolt maps; nothing for a Writer's own Reader).
func (r *Reader) validateKeyOrder() error {
	if r.file == nil {
		return nil
	}
	st, err := r.file.Stat()
	if err != nil {
		return err
	}
	return ValidateKeyOrder(r.file, r.path, st.Size())
}
