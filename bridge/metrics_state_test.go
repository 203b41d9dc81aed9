package bridge

import "testing"

// TestConnectionStateOneSeries: a connection has one
// bridge_connection_state series, its current state's, whatever states it
// went through (a series per state was ~5 KiB per connection).
func TestConnectionStateOneSeries(t *testing.T) {
	t.Parallel()
	m := newMetrics("test", func() bool { return true })
	for _, st := range []State{StateStarting, StateConnecting, StateConnected, StateReconnecting, StateConnected} {
		m.setState("c1", "band", st)
	}
	m.setState("c2", "band", StateConnecting)
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "bridge_connection_state" {
			continue
		}
		for _, mt := range f.GetMetric() {
			k := ""
			for _, l := range mt.GetLabel() {
				k += l.GetName() + "=" + l.GetValue() + " "
			}
			got[k] = mt.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"connection=c1 platform=band state=connected ":  1,
		"connection=c2 platform=band state=connecting ": 1,
	}
	if len(got) != len(want) || got["connection=c1 platform=band state=connected "] != 1 || got["connection=c2 platform=band state=connecting "] != 1 {
		t.Fatalf("bridge_connection_state series %v, want %v", got, want)
	}
}
