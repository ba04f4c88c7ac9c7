package membudget

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// TestLargestHoldersEnd: past the budget the holder that holds the most is
// ended, the request waits for it to let go, and what is held never passes
// the budget.
func TestLargestHoldersEnd(t *testing.T) {
	b := New(100)
	var mu sync.Mutex
	var ended []string
	holders := map[string]*Holder{}
	hold := func(name string) *Holder {
		h := b.Hold(func() {
			mu.Lock()
			ended = append(ended, name)
			h := holders[name]
			mu.Unlock()
			go func() { time.Sleep(5 * time.Millisecond); h.Release() }() // the stream ends a moment later
		})
		mu.Lock()
		holders[name] = h
		mu.Unlock()
		return h
	}
	a, c, d := hold("a"), hold("c"), hold("d")
	if a.Grow(50) != nil || c.Grow(30) != nil || d.Grow(10) != nil {
		t.Fatal("within the budget")
	}
	// d needs 30 more: a, the largest, is ended; d waits for it to let go.
	if err := d.Grow(30); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(ended) != 1 || ended[0] != "a" || !a.Ended() || b.Ended() != 1 {
		t.Fatalf("ended %v", ended)
	}
	mu.Unlock()
	if err := a.Grow(1); !errors.Is(err, ErrOver) {
		t.Fatalf("an ended holder grew: %v", err)
	}
	if b.Used() != 70 || b.Peak() > 100 {
		t.Fatalf("used %d, peak %d", b.Used(), b.Peak())
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
	mu.Lock()
	if len(ended) != 1 {
		t.Fatalf("ended %v", ended)
	}
	mu.Unlock()
	d.Release()
	c.Release()
	if b.Used() != 0 || b.Peak() > 100 {
		t.Fatalf("used %d, peak %d", b.Used(), b.Peak())
	}
}

// TestStuckHolderTimesOut: a holder ended for another's sake that never
// lets go costs the asker its request after maxWait, not a hang.
func TestStuckHolderTimesOut(t *testing.T) {
	b := New(100)
	big := b.Hold(func() {}) // never releases
	small := b.Hold(nil)
	big.Grow(90)
	start := time.Now()
	err := small.Grow(20)
	if !errors.Is(err, ErrOver) || time.Since(start) < maxWait || time.Since(start) > maxWait+2*time.Second {
		t.Fatalf("after %v: %v", time.Since(start), err)
	}
	if b.Peak() > 100 {
		t.Fatalf("peak %d", b.Peak())
	}
}

// TestConcurrentHoldersStayWithin: many streams growing and ending at once
// never hold more than the budget.
func TestConcurrentHoldersStayWithin(t *testing.T) {
	b := New(1 << 20)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < 20; round++ {
				var h *Holder
				stop := make(chan struct{})
				var once sync.Once
				h = b.Hold(func() { once.Do(func() { close(stop) }) })
				for step := 0; step < 50; step++ {
					select {
					case <-stop:
					default:
						if h.Grow(int64(1+i)*1024) == nil {
							continue
						}
					}
					break
				}
				h.Release()
			}
		}()
	}
	wg.Wait()
	if b.Peak() > 1<<20 || b.Used() != 0 {
		t.Fatalf("peak %d of %d, used %d at the end", b.Peak(), 1<<20, b.Used())
	}
	t.Logf("peak %d KiB of 1024, %d ended", b.Peak()>>10, b.Ended())
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
