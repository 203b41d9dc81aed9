package connector

import "context"

// Next takes the next item from a connector's queue of received events:
// one already queued comes first, even when the session has ended; then
// whichever comes first of a new item, halt closing (the session ended:
// [ErrNotConnected]) and ctx ending.
func Next[T any](ctx context.Context, out <-chan T, halt <-chan struct{}) (T, error) {
	select {
	case it := <-out:
		return it, nil
	default:
	}
	var zero T
	select {
	case it := <-out:
		return it, nil
	case <-halt:
		return zero, ErrNotConnected
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}
