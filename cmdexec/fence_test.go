package cmdexec_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/cmdexec"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// A process whose lease is no longer valid (Fence fails) executes nothing:
// the commands it fetched stay unexecuted in its hand until it stops (as
// it does when its lease is gone), then go back, and the holder executes
// each once.
func TestFencedExecutorHandsCommandsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	stale, holder := newFake(), newFake()
	o := e.options(stale)
	o.Fence = func() error { return errors.New("lease no longer valid here") }
	_, stopStale := e.start(o)
	const n = 40
	for i := range n {
		e.publish(cmdSubject(fmt.Sprintf("r%d", i%4), "send_message"), `{}`, subjects.HeaderMsgID, fmt.Sprintf("c-%d", i))
	}
	// Let the stale process fetch before the holder starts.
	testutil.Eventually(t, 20*time.Second, func() bool {
		c, err := e.s.JS.Consumer(e.ctx, "BRIDGE_COMMANDS", cmdexec.ConsumerName("c1"))
		if err != nil {
			return false
		}
		ci, err := c.Info(e.ctx)
		return err == nil && ci.NumAckPending > 0
	}, "stale process fetched")
	if err := stopStale(); err != nil {
		t.Fatal(err)
	}
	e.start(e.options(holder))
	testutil.Eventually(t, 30*time.Second, func() bool { return e.res.distinct(t) == n }, "every command executed")
	if calls := stale.snapshot(); len(calls) != 0 {
		t.Errorf("the fenced process executed %d commands", len(calls))
	}
	for i := range n {
		if c := holder.count(fmt.Sprintf("c-%d", i)); c != 1 {
			t.Errorf("c-%d executed %d times by the holder", i, c)
		}
	}
}
