package tick

import (
	"sync/atomic"
	"testing"
	"time"
)

type counter struct {
	Entry
	n atomic.Int32
}

func (c *counter) Tick() { c.n.Add(1) }

// TestWheel: every entry is called about once per period, a stopped one
// never again, and the wheel's timer stops once no entry is left and
// starts again with the next.
func TestWheel(t *testing.T) {
	t.Parallel()
	const period = 160 * time.Millisecond
	w := New(period)
	cs := make([]*counter, 100)
	for i := range cs {
		cs[i] = &counter{}
		w.Add(&cs[i].Entry, cs[i])
	}
	time.Sleep(period/2 + 5*period)
	for i, c := range cs {
		if n := c.n.Load(); n < 4 || n > 6 {
			t.Fatalf("entry %d called %d times in 5.5 periods", i, n)
		}
	}
	for i, c := range cs {
		if i%2 == 0 && !c.Stop() {
			t.Fatalf("entry %d not registered", i)
		}
	}
	time.Sleep(period) // a tick under way may still call a stopped entry
	before := make([]int32, len(cs))
	for i, c := range cs {
		before[i] = c.n.Load()
	}
	time.Sleep(2 * period)
	for i, c := range cs {
		d := c.n.Load() - before[i]
		if i%2 == 0 && d != 0 || i%2 == 1 && d < 1 {
			t.Fatalf("entry %d (stopped: %v) called %d times in 2 periods", i, i%2 == 0, d)
		}
	}
	for i, c := range cs {
		if c.Stop() != (i%2 == 1) {
			t.Fatalf("entry %d: Stop reported the wrong registration", i)
		}
	}
	time.Sleep(2 * period / slots)
	w.mu.Lock()
	armed, n := w.armed, w.n
	w.mu.Unlock()
	if armed || n != 0 {
		t.Fatalf("empty wheel: armed %v, %d entries", armed, n)
	}
	c := &counter{}
	w.Add(&c.Entry, c)
	time.Sleep(period + period/2)
	if c.n.Load() != 1 {
		t.Fatalf("entry added to a stopped wheel called %d times in 1.5 periods", c.n.Load())
	}
}

// TestTickAll: TickAll calls every registered entry at once, and no
// stopped one.
func TestTickAll(t *testing.T) {
	t.Parallel()
	w := New(time.Hour)
	cs := make([]*counter, 10)
	for i := range cs {
		cs[i] = &counter{}
		w.Add(&cs[i].Entry, cs[i])
	}
	cs[3].Stop()
	w.TickAll()
	for i, c := range cs {
		if want := int32(1); i == 3 && c.n.Load() != 0 || i != 3 && c.n.Load() != want {
			t.Fatalf("entry %d called %d times", i, c.n.Load())
		}
	}
	for _, c := range cs {
		c.Stop()
	}
}
