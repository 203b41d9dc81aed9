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
