// Package tick calls many periodic callbacks from one runtime timer.
//
// A [Wheel] replaces a re-armed time.AfterFunc per idle connection (a
// timer and its closure, about 0.13 KiB each, in a size class the heap
// fills with start-up garbage) with an [Entry] embedded in the owner and
// a pointer in one of the wheel's slots. The wheel's timer runs only
// while an entry is registered, and holds no goroutine between ticks.
package tick
