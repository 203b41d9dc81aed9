package bridge

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// TestStartDialsAtTheConfiguredRate starts a bridge with many Band
// connections at once: the emulator must never see more than the limiter
// allows (burst + rate per second, checked over three-second windows) and
// every connection must still come up.
func TestStartDialsAtTheConfiguredRate(t *testing.T) {
	t.Parallel()
	const conns, rate, burst = 60, 10, 2
	emu := bandemu.New(bandemu.Options{})
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "[dial]\nrate = %d\nburst = %d\n", rate, burst)
	env := map[string]string{}
	var agents []string
	for i := range conns {
		a := emu.AddAgent(fmt.Sprintf("Agent %d", i))
		agents = append(agents, a.ID)
		env[fmt.Sprintf("KEY_%d", i)] = a.APIKey
		fmt.Fprintf(&cfg, "[[connection]]\nname = \"a%d\"\nplatform = \"band\"\nsettings = { base_url = %q, agent_id = %q, api_key_env = \"KEY_%d\" }\n",
			i, url, a.ID, i)
	}
	runBridge(t, bridgeSpec{config: cfg.String(), registry: fastBand(), env: env})
	testutil.Eventually(t, 60*time.Second, func() bool {
		for _, id := range agents {
			if !emu.Connected(id) {
				return false
			}
		}
		return true
	}, "all %d agents connected", conns)
	st := emu.DialStats()
	t.Logf("%d dials from %s to %s; busiest second: %d, busiest 3 s: %d", st.Total, st.First.Format(time.StampMilli),
		st.Last.Format(time.StampMilli), st.MaxPerSecond, st.MaxPer3Seconds)
	// The limiter grants at most burst + 3×rate dials in any 3 s; the
	// emulator sees arrival times, which a busy machine shifts by up to a
	// few dials at the window's two edges. Unlimited, all 60 arrive at once.
	if limit := burst + 3*rate + 3; st.MaxPer3Seconds > limit {
		t.Fatalf("the emulator saw %d dials in three seconds; [dial] allows %d + 3×%d (+3 for arrival jitter)", st.MaxPer3Seconds, burst, rate)
	}
	if st.Total < conns {
		t.Fatalf("%d dials for %d connections", st.Total, conns)
	}
}
