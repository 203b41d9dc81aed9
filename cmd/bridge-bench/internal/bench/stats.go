package bench

import (
	"math"
	"slices"
	"time"
)

// Figure is one measured quantity over the runs of a report.
type Figure struct {
	Group  string    `json:"group"`
	Name   string    `json:"name"`
	Unit   string    `json:"unit"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Runs   []float64 `json:"runs"`
	Note   string    `json:"note,omitempty"`
}

// collector gathers the per-run values of every figure in first-seen order.
// It is used from one goroutine (the scenario loop).
type collector struct {
	figs  map[string]*Figure
	order []string
}

func newCollector() *collector { return &collector{figs: map[string]*Figure{}} }

// add records one run's value of a figure.
func (c *collector) add(group, name, unit string, v float64) {
	k := group + "\x00" + name
	f := c.figs[k]
	if f == nil {
		f = &Figure{Group: group, Name: name, Unit: unit}
		c.figs[k] = f
		c.order = append(c.order, k)
	}
	f.Runs = append(f.Runs, v)
}

// note attaches a note to a figure (created empty if needed).
func (c *collector) note(group, name, unit, note string) {
	k := group + "\x00" + name
	f := c.figs[k]
	if f == nil {
		f = &Figure{Group: group, Name: name, Unit: unit}
		c.figs[k] = f
		c.order = append(c.order, k)
	}
	f.Note = note
}

// last returns the most recent value of a figure, and whether it has one.
func (c *collector) last(group, name string) (float64, bool) {
	f := c.figs[group+"\x00"+name]
	if f == nil || len(f.Runs) == 0 {
		return 0, false
	}
	return f.Runs[len(f.Runs)-1], true
}

// figures returns the figures with median, min and max filled in.
func (c *collector) figures() []Figure {
	out := make([]Figure, 0, len(c.order))
	for _, k := range c.order {
		f := *c.figs[k]
		if len(f.Runs) > 0 {
			s := slices.Clone(f.Runs)
			slices.Sort(s)
			f.Min, f.Max, f.Median = s[0], s[len(s)-1], median(s)
		}
		out = append(out, f)
	}
	return out
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// latencies collects durations and answers percentiles.
type latencies []time.Duration

// percentile returns the q-quantile (0 < q <= 1) by the nearest-rank
// method; it sorts l in place.
func (l latencies) percentile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	slices.Sort(l)
	i := int(math.Ceil(q*float64(len(l)))) - 1
	return l[max(0, min(i, len(l)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
