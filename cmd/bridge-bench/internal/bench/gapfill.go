package bench

import (
	"context"
	"fmt"
	"time"
)

// gapfill leaves GapFillBacklog messages pending for the agent (spread over
// GapFillRooms rooms, no socket connected, so nothing is pushed), then
// starts a bridge and times how long it takes until every one is stored in
// BRIDGE_EVENTS: start-up, GET /agent/me, socket, joins, and the catch-up
// walking the rooms' unprocessed messages page by page.
func (e *Env) gapfill(ctx context.Context, run int) error {
	emu, err := startEmu(emuOptions(), 1, e.plan.GapFillRooms)
	if err != nil {
		return err
	}
	defer emu.close()
	rooms := emu.agents[0].RoomIDs
	n := e.plan.GapFillBacklog
	for i := range n {
		emu.emu.PostUserMessage(rooms[i%len(rooms)], emu.user.ID, benchContent(i, time.Now()))
	}
	dir := e.dir()
	defer e.removeDir(dir)

	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	start := time.Now()
	b, err := startBridge(ctx, bridgeSpec{emuURL: emu.url, agents: emu.agents, storeDir: dir, log: e.log})
	if err != nil {
		return err
	}
	defer func() { _ = b.stop() }()
	ready := time.Since(start)
	obs, err := newObserver(ctx, b.info.NATSClientURL)
	if err != nil {
		return err
	}
	defer obs.close()
	end, err := obs.waitCount(ctx, evtFilter, uint64(n), 2*time.Millisecond)
	if err != nil {
		return err
	}
	d := end.Sub(start)
	e.logf("   backlog %d in %d room(s): all stored after %.3f s (bridge ready after %.3f s) = %.0f msgs/s",
		n, len(rooms), d.Seconds(), ready.Seconds(), perSecond(n, d))
	name := fmt.Sprintf("drain %d pending messages (%d room)", n, len(rooms))
	e.c.add("gapfill", name+": time from bridge start to all stored", "s", d.Seconds())
	e.c.add("gapfill", name+": rate", "msgs/s", perSecond(n, d))
	return nil
}
