package bench

import (
	"context"
	"fmt"
)

// inbound measures events/s stored in BRIDGE_EVENTS with the emulator
// pushing as fast as the consumer reads, over 1 and over InboundConns agent
// sockets, for the source alone (frames counted), baseline 1 and the
// bridge. The three run in a rotating order so drift during a run does not
// always favour the same one.
func (e *Env) inbound(ctx context.Context, run int) error {
	for _, conns := range []int{1, e.plan.InboundConns} {
		rates := map[kind]float64{}
		cpu := map[kind]float64{}
		kinds := []kind{kindSource, kindBaseline, kindBridge}
		for i := range kinds {
			k := kinds[(i+run-1)%len(kinds)]
			r, err := e.inboundOnce(ctx, k, conns)
			if err != nil {
				return fmt.Errorf("%s, %d conns: %w", k, conns, err)
			}
			rates[k], cpu[k] = r.perSec, us(r.cpu)
			e.logf("   %-10s %3d conns: %8.0f events/s, %5.1f µs CPU/event", k, conns, r.perSec, cpu[k])
		}
		sfx := fmt.Sprintf(", %d conn", conns)
		if conns > 1 {
			sfx += "s"
		}
		e.c.add("inbound", "source ceiling (reader counts frames)"+sfx, "events/s", rates[kindSource])
		e.c.add("inbound", "baseline 1 (WS → JSON → JS async)"+sfx, "events/s", rates[kindBaseline])
		e.c.add("inbound", "bridge"+sfx, "events/s", rates[kindBridge])
		e.c.add("inbound", "bridge ÷ baseline 1"+sfx, "ratio", rates[kindBridge]/rates[kindBaseline])
		e.c.add("inbound", "baseline 1 ÷ source ceiling"+sfx, "ratio", rates[kindBaseline]/rates[kindSource])
		e.c.add("inbound", "CPU per event, source ceiling"+sfx, "µs", cpu[kindSource])
		e.c.add("inbound", "CPU per event, baseline 1"+sfx, "µs", cpu[kindBaseline])
		e.c.add("inbound", "CPU per event, bridge"+sfx, "µs", cpu[kindBridge])
		e.c.add("inbound", "bridge's added CPU per event (bridge − baseline 1)"+sfx, "µs", cpu[kindBridge]-cpu[kindBaseline])
		if rates[kindBaseline] >= 0.85*rates[kindSource] {
			e.note("inbound%s: baseline 1 reaches %.0f%% of the frame-counting reader, so the emulator (the event source) is near its limit there and bounds both baseline 1 and the bridge; the ratio then understates the bridge's headroom.",
				sfx, 100*rates[kindBaseline]/rates[kindSource])
		}
	}
	return nil
}

// inboundOnce runs one measurement on a fresh emulator and NATS server.
func (e *Env) inboundOnce(ctx context.Context, k kind, conns int) (rate, error) {
	emu, err := startEmu(emuOptions(), conns, 1)
	if err != nil {
		return rate{}, err
	}
	defer emu.close()
	dir := e.dir()
	defer e.removeDir(dir)
	p, err := startPipeline(ctx, k, emu, dir, e)
	if err != nil {
		return rate{}, err
	}
	defer p.close()
	if err := p.warmUp(ctx); err != nil {
		return rate{}, fmt.Errorf("warm-up: %w", err)
	}
	return p.throughput(ctx, e.plan.InboundEvents)
}
