package connector

import (
	"context"
	"errors"
	"testing"
)

func TestNext(t *testing.T) {
	t.Parallel()
	out, halt := make(chan int, 2), make(chan struct{})
	out <- 1
	close(halt)
	if v, err := Next(context.Background(), out, halt); err != nil || v != 1 {
		t.Fatalf("a queued item comes before the end: %d, %v", v, err)
	}
	if _, err := Next(context.Background(), out, halt); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("after the end: %v, want ErrNotConnected", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Next(ctx, out, make(chan struct{})); !errors.Is(err, context.Canceled) {
		t.Fatalf("ended ctx: %v", err)
	}
}
