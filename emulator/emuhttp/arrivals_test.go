package emuhttp

import (
	"testing"
	"time"
)

func TestArrivalsStatsSince(t *testing.T) {
	t.Parallel()
	var a Arrivals
	t0 := time.Unix(1000, 0)
	for i := range 5 { // 5 within one second
		a.Add(t0.Add(time.Duration(i) * 100 * time.Millisecond))
	}
	mark := t0.Add(10 * time.Second)
	for i := range 3 { // then 3 within one second
		a.Add(mark.Add(time.Duration(i) * 200 * time.Millisecond))
	}
	if st := a.Stats(); st.Total != 8 || st.MaxPerSecond != 5 {
		t.Fatalf("all: total %d, busiest second %d; want 8, 5", st.Total, st.MaxPerSecond)
	}
	st := a.StatsSince(mark)
	if st.Total != 3 || st.MaxPerSecond != 3 || !st.First.Equal(mark) {
		t.Fatalf("since the mark: total %d, busiest second %d, first %v; want 3, 3, %v", st.Total, st.MaxPerSecond, st.First, mark)
	}
}
