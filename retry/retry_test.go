package retry

import (
	"context"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	t.Parallel()
	p := Policy{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: NoJitter}
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{
		{0, 100 * time.Millisecond}, {1, 100 * time.Millisecond}, {2, 200 * time.Millisecond},
		{4, 800 * time.Millisecond}, {5, time.Second}, {64, time.Second}, {1 << 30, time.Second},
	} {
		if got := p.Delay(tc.attempt); got != tc.want {
			t.Errorf("Delay(%d) = %s, want %s", tc.attempt, got, tc.want)
		}
	}
	if got := (Policy{Jitter: NoJitter}).Delay(1); got != 100*time.Millisecond {
		t.Errorf("default Initial: %s", got)
	}
	if got := (Policy{Initial: time.Second, Max: time.Millisecond, Jitter: NoJitter}).Delay(3); got != time.Second {
		t.Errorf("Max below Initial: %s, want Initial", got)
	}
}

func TestEqualJitterSpreads(t *testing.T) {
	t.Parallel()
	p := Policy{Initial: time.Second, Max: time.Second}
	seen := map[time.Duration]bool{}
	for range 200 {
		d := p.Delay(1)
		if d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("jittered wait %s outside [500ms, 1s]", d)
		}
		seen[d] = true
	}
	if len(seen) < 50 {
		t.Fatalf("only %d distinct waits in 200: not spread", len(seen))
	}
}

func TestBackoffResets(t *testing.T) {
	t.Parallel()
	b := Policy{Initial: 10 * time.Millisecond, Max: time.Second, Jitter: NoJitter}.Start()
	for _, want := range []time.Duration{10, 20, 40} {
		if got := b.Next(); got != want*time.Millisecond {
			t.Fatalf("Next = %s, want %dms", got, want)
		}
	}
	if b.Failures() != 3 {
		t.Fatalf("Failures = %d", b.Failures())
	}
	b.Reset()
	if got := b.Next(); got != 10*time.Millisecond {
		t.Fatalf("after Reset: %s", got)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep on an ended context returned true")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep returned false on a live context")
	}
}
