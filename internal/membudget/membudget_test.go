package membudget

import (
	"errors"
	"testing"
)

func TestLargestHoldersEnd(t *testing.T) {
	b := New(100)
	var ended []string
	hold := func(name string) *Holder { return b.Hold(func() { ended = append(ended, name) }) }
	a, c, d := hold("a"), hold("c"), hold("d")
	if a.Grow(50) != nil || c.Grow(30) != nil || d.Grow(10) != nil {
		t.Fatal("within the budget")
	}
	// d needs 30 more: a, the largest, is ended; its 50 count as freed.
	if err := d.Grow(30); err != nil {
		t.Fatal(err)
	}
	if len(ended) != 1 || ended[0] != "a" || !a.Ended() || b.Ended() != 1 {
		t.Fatalf("ended %v", ended)
	}
	// a, ended, is refused and releases.
	if err := a.Grow(1); !errors.Is(err, ErrOver) {
		t.Fatalf("an ended holder grew: %v", err)
	}
	a.Release()
	if b.Used() != 70 {
		t.Fatalf("used %d", b.Used())
	}
	// d (40) now holds the most and asks past the budget: it is refused,
	// nobody else is ended.
	if err := d.Grow(40); err == nil || !errors.Is(err, ErrOver) || !d.Ended() {
		t.Fatalf("the largest asker: %v", err)
	}
	var oe *OverError
	if err := d.Grow(1); !errors.As(err, &oe) || oe.ErrClass() != "MEMORY_BUDGET" {
		t.Fatalf("%v", err)
	}
	if len(ended) != 1 {
		t.Fatalf("ended %v", ended)
	}
	// Until a's release, its 50 bytes and d's 30 were held together: the
	// budget is passed by what ended holders hold, until they let go.
	if b.Peak() != 120 || b.Used() != 70 {
		t.Fatalf("peak %d, used %d", b.Peak(), b.Used())
	}
}

func TestTakeAndNil(t *testing.T) {
	b := New(100)
	if got := b.Take(64); got != 64 {
		t.Fatal(got)
	}
	if got := b.Take(64); got != 36 {
		t.Fatal(got)
	}
	var none *Budget
	h := none.Hold(nil)
	if h.Grow(1<<40) != nil || none.Take(5) != 5 || none.Limit() != 0 {
		t.Fatal("a nil budget limits")
	}
	h.Release()
	if New(0) != nil {
		t.Fatal("New(0) is a budget")
	}
}

func TestDefault(t *testing.T) {
	d := Default()
	t.Logf("default budget %d MiB (MemAvailable %d MiB, cgroup %d MiB)", d>>20, memAvailable()>>20, cgroupLimit()>>20)
	if memAvailable() > 0 && (d <= 0 || d > memAvailable()) {
		t.Fatalf("default %d of %d available", d, memAvailable())
	}
}
