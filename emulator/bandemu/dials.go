package bandemu

import (
	"slices"
	"sync"
	"time"
)

// maxDialLog bounds the upgrade times kept for DialStats; past it the
// oldest half is dropped (Dials still counts every one).
const maxDialLog = 1 << 20

// dialLog records the time of every socket upgrade request, refused ones
// included: what a platform's connection rate limit would count.
type dialLog struct {
	mu    sync.Mutex
	total int
	times []time.Time // in arrival order
}

func (d *dialLog) add(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.total++
	if len(d.times) >= maxDialLog {
		n := copy(d.times, d.times[len(d.times)/2:])
		d.times = d.times[:n]
	}
	d.times = append(d.times, t)
}

// DialStats summarises the socket upgrade requests the emulator received.
type DialStats struct {
	// Total counts every upgrade request since the server started.
	Total int
	// MaxPerSecond is the most upgrade requests seen in any one-second
	// window (sliding, not aligned to clock seconds).
	MaxPerSecond int
	// MaxPer3Seconds is the same over any three-second window: a longer
	// window is what a rate check can rely on when arrival times jitter
	// (a busy machine delays some requests and bunches others).
	MaxPer3Seconds int
	// First and Last are the times of the first and the last request.
	First, Last time.Time
}

// DialStats reports how many sockets were dialled and the busiest second.
func (s *Server) DialStats() DialStats {
	d := &s.dials
	d.mu.Lock()
	defer d.mu.Unlock()
	st := DialStats{Total: d.total}
	if len(d.times) == 0 {
		return st
	}
	// Concurrent handlers may record slightly out of order.
	times := slices.SortedFunc(slices.Values(d.times), time.Time.Compare)
	st.First, st.Last = times[0], times[len(times)-1]
	st.MaxPerSecond = busiest(times, time.Second)
	st.MaxPer3Seconds = busiest(times, 3*time.Second)
	return st
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
