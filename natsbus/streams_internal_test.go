package natsbus

import "testing"

func TestConsumerLimit(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ own, acct, want int }{
		{0, 0, 0},       // no consumers of the bridge's: the server's default
		{5, 0, 1005},    // room for the workers' beside the bridge's
		{5000, 0, 6000}, // past the server's default of 1,000
		{5, 100, 100},   // never past the account's limit (the stream would be refused)
	} {
		if got := consumerLimit(c.own, c.acct); got != c.want {
			t.Errorf("consumerLimit(%d, %d) = %d, want %d", c.own, c.acct, got, c.want)
		}
	}
}

func TestCovers(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		k, s string
		want bool
	}{
		{"bridge.cmd.band.>", "bridge.cmd.band.a.>", true},
		{"bridge.cmd.band.>", "bridge.cmd.band.a.r.send", true},
		{"bridge.cmd.band.>", "bridge.cmd.band.>", true},
		{"bridge.cmd.band.a.>", "bridge.cmd.band.>", false},
		{"bridge.cmd.band.>", "bridge.cmd.polyai.a.>", false},
		{"bridge.cmd.band.>", "bridge.cmd.band", false},
		{"bridge.cmd.*.a.>", "bridge.cmd.band.a.>", true},
		{"bridge.cmd.*.a.>", "bridge.cmd.>", false},
		{"bridge.cmd.band.a.>", "bridge.cmd.band.a.>", true},
		{"BRIDGE_COMMANDS", "BRIDGE_COMMANDS", true},
	} {
		if got := covers(c.k, c.s); got != c.want {
			t.Errorf("covers(%q, %q) = %v, want %v", c.k, c.s, got, c.want)
		}
	}
}
