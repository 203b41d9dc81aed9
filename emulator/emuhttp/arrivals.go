package emuhttp

import (
	"slices"
	"sync"
	"time"
)

// maxArrivals bounds the times an [Arrivals] keeps; past it the oldest
// half is dropped (the total still counts every one).
const maxArrivals = 1 << 20

// Arrivals records when requests of one kind arrived (socket upgrades,
// heartbeats), for the rate an emulator reports: what a platform's rate
// limit would count. The zero value is ready; it is safe for concurrent
// use.
type Arrivals struct {
	mu    sync.Mutex
	total int
	times []time.Time // in arrival order
}

// Add records one arrival at t.
func (a *Arrivals) Add(t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total++
	if len(a.times) >= maxArrivals {
		n := copy(a.times, a.times[len(a.times)/2:])
		a.times = a.times[:n]
	}
	a.times = append(a.times, t)
}

// ArrivalStats summarises the arrivals recorded.
type ArrivalStats struct {
	// Total counts every arrival.
	Total int
	// MaxPerSecond is the most arrivals in any one-second window
	// (sliding, not aligned to clock seconds).
	MaxPerSecond int
	// MaxPer3Seconds is the same over any three-second window: a longer
	// window is what a rate check can rely on when arrival times jitter
	// (a busy machine delays some requests and bunches others).
	MaxPer3Seconds int
	// First and Last are the times of the first and the last arrival.
	First, Last time.Time
}

// Stats reports the total, the busiest windows and the time span.
func (a *Arrivals) Stats() ArrivalStats {
	return stats(a.sorted(), a.Total())
}

// StatsSince is Stats of the arrivals at or after since (its Total counts
// the kept ones only).
func (a *Arrivals) StatsSince(since time.Time) ArrivalStats {
	times := a.sorted()
	i, _ := slices.BinarySearchFunc(times, since, time.Time.Compare)
	return stats(times[i:], len(times)-i)
}

func stats(times []time.Time, total int) ArrivalStats {
	st := ArrivalStats{Total: total}
	if len(times) == 0 {
		return st
	}
	st.First, st.Last = times[0], times[len(times)-1]
	st.MaxPerSecond = busiest(times, time.Second)
	st.MaxPer3Seconds = busiest(times, 3*time.Second)
	return st
}

// Busiest is the most arrivals at or after since within any window of
// length w.
func (a *Arrivals) Busiest(since time.Time, w time.Duration) int {
	times := a.sorted()
	i, _ := slices.BinarySearchFunc(times, since, time.Time.Compare)
	return busiest(times[i:], w)
}

// Total counts every arrival.
func (a *Arrivals) Total() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total
}

// sorted returns the kept times in order (concurrent handlers may record
// slightly out of order).
func (a *Arrivals) sorted() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.SortedFunc(slices.Values(a.times), time.Time.Compare)
}

// busiest is the most of the sorted times within any window of length w.
func busiest(times []time.Time, w time.Duration) int {
	most, lo := 0, 0
	for hi, t := range times {
		for t.Sub(times[lo]) >= w {
			lo++
		}
		most = max(most, hi-lo+1)
	}
	return most
}
