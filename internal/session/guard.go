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
			err = fmt.Errorf("%s %w: reading it failed: %v", r.path, ErrDamaged, p)
		}
	}()
	return r.db.View(fn)
}
