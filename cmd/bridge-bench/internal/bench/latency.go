package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// latency paces message_created pushes at LatencyRate over one agent
// socket and measures, per event, the time from the emulator's send (the
// timestamp written into the message just before it is posted) to its
// receipt by a JetStream consumer on BRIDGE_EVENTS, for baseline 1 and the
// bridge in the same run.
func (e *Env) latency(ctx context.Context, run int) error {
	kinds := []kind{kindBaseline, kindBridge}
	if run%2 == 0 {
		kinds[0], kinds[1] = kinds[1], kinds[0]
	}
	p50, p99 := map[kind]float64{}, map[kind]float64{}
	for _, k := range kinds {
		l, err := e.latencyOnce(ctx, k)
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		p50k, p99k, p999 := ms(l.percentile(0.50)), ms(l.percentile(0.99)), ms(l.percentile(0.999))
		e.logf("   %-10s p50 %.3f ms  p99 %.3f ms  p999 %.3f ms  (%d events)", k, p50k, p99k, p999, len(l))
		name := fmt.Sprintf("%s at %d/s", k, e.plan.LatencyRate)
		e.c.add("latency", name+": p50", "ms", p50k)
		e.c.add("latency", name+": p99", "ms", p99k)
		e.c.add("latency", name+": p999", "ms", p999)
		p50[k], p99[k] = p50k, p99k
	}
	e.c.add("latency", "added p50 (bridge − baseline 1)", "ms", p50[kindBridge]-p50[kindBaseline])
	e.c.add("latency", "added p99 (bridge − baseline 1)", "ms", p99[kindBridge]-p99[kindBaseline])
	return nil
}

// latencyOnce runs one paced measurement on a fresh emulator and NATS.
func (e *Env) latencyOnce(ctx context.Context, k kind) (latencies, error) {
	emu, err := startEmu(emuOptions(), 1, 1)
	if err != nil {
		return nil, err
	}
	defer emu.close()
	dir := e.dir()
	defer e.removeDir(dir)
	p, err := startPipeline(ctx, k, emu, dir, e)
	if err != nil {
		return nil, err
	}
	defer p.close()
	if err := p.warmUp(ctx); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}

	n := int(float64(e.plan.LatencyRate) * e.plan.LatencyDuration.Seconds())
	rec := &receipts{want: n, done: make(chan struct{}), lat: make(latencies, 0, n)}
	cons, err := p.obs.js.OrderedConsumer(ctx, eventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{evtFilter}, DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return nil, err
	}
	cc, err := cons.Consume(rec.receive)
	if err != nil {
		return nil, err
	}
	defer stopConsume(cc)

	interval := time.Second / time.Duration(e.plan.LatencyRate)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		emu.emu.PostUserMessage(emu.agents[0].room(), emu.user.ID, benchContent(i, time.Now()))
	}
	select {
	case <-rec.done:
	case <-time.After(15 * time.Second):
		return nil, p.orFailure(fmt.Errorf("received %d of %d events", rec.received(), n))
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return rec.result(), nil
}

// receipts records the latency of each consumed event.
type receipts struct {
	mu   sync.Mutex
	want int
	lat  latencies
	bad  int
	done chan struct{}
}

// sentMark precedes the send time in benchContent.
const sentMark = " t="

func (r *receipts) receive(msg jetstream.Msg) {
	now := time.Now()
	sent := sentTime(msg.Data())
	r.mu.Lock()
	defer r.mu.Unlock()
	if sent == 0 {
		r.bad++
		return
	}
	r.lat = append(r.lat, now.Sub(time.Unix(0, sent)))
	if len(r.lat) == r.want {
		close(r.done)
	}
}

func (r *receipts) received() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.lat)
}

func (r *receipts) result() latencies {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lat
}
