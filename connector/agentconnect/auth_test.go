package agentconnect

import (
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/emulator/agentconnectemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// TestTokenRenewedAheadOfExp: a token is kept until it is within
// renew_before (at most half its lifetime) of exp, then replaced by a new
// login before the platform would refuse it.
func TestTokenRenewedAheadOfExp(t *testing.T) {
	emu := agentconnectemu.New(agentconnectemu.Options{TokenLifetime: 2 * time.Second, NoRateLimits: true})
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	cfg := ConfigFor(url, agentconnectemu.DefaultUser, emu.Password())
	cfg.Settings["renew_before"] = "1s"
	c, err := New(cfg, connector.Deps{Log: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Context(t, 10*time.Second)
	first, err := c.auth.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := c.auth.get(ctx); again != first || c.auth.logins != 1 {
		t.Fatalf("a fresh token was replaced (logins %d)", c.auth.logins)
	}
	exp, ahead := c.auth.exp, c.auth.ahead() // exp is whole seconds: ahead may be under 1s
	if ahead <= 0 || ahead > time.Second {
		t.Fatalf("renewal %s ahead of exp, want (0, 1s]", ahead)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return time.Now().After(exp.Add(-ahead)) }, "the renewal window")
	renewed, err := c.auth.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if renewed == first {
		t.Fatalf("token not renewed ahead of exp (logins %d)", c.auth.logins)
	}
	if c.auth.logins != 2 || !c.auth.exp.After(exp) {
		t.Errorf("logins %d, exp %s after %s: want one more login and a later exp", c.auth.logins, c.auth.exp, exp)
	}
}
