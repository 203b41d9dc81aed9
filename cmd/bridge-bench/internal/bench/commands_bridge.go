package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/emulator/bandemu"
)

// bridgeCommands runs baseline 2's workload through the bridge: n
// send_message commands over rooms rooms, published to BRIDGE_COMMANDS
// while the bridge's executor consumes them; the rate runs from the first
// publish to the last result on P.res…. One command per room first warms
// the executor up (its released consumer taken back, rooms scheduled, REST
// connections open).
func (e *Env) bridgeCommands(ctx context.Context, n, rooms int) (rate, error) {
	emu, err := startEmu(emuOptions(), 1, rooms)
	if err != nil {
		return rate{}, err
	}
	defer emu.close()
	dir := e.dir()
	defer e.removeDir(dir)
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	b, err := startBridge(ctx, bridgeSpec{emuURL: emu.url, agents: emu.agents, storeDir: dir, log: e.log})
	if err != nil {
		return rate{}, err
	}
	defer func() { _ = b.stop() }()
	obs, err := newObserver(ctx, b.info.NATSClientURL)
	if err != nil {
		return rate{}, err
	}
	defer obs.close()

	var ok, bad atomic.Int64
	var target atomic.Int64
	target.Store(int64(rooms))
	done := make(chan struct{}, 1)
	sub, err := obs.nc.Subscribe("bridge.res.band."+connName(0)+".>", func(m *nats.Msg) {
		if bytes.Contains(m.Data, []byte(`"ok":true`)) {
			ok.Add(1)
		} else {
			bad.Add(1)
		}
		if ok.Load()+bad.Load() == target.Load() {
			done <- struct{}{}
		}
	})
	if err != nil {
		return rate{}, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := obs.nc.Flush(); err != nil {
		return rate{}, err
	}
	roomIDs := emu.agents[0].RoomIDs
	wait := func(what string) error {
		select {
		case <-done:
			if bad.Load() > 0 {
				return fmt.Errorf("%s: %d commands failed", what, bad.Load())
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%s: %d of %d results: %w", what, ok.Load()+bad.Load(), target.Load(), ctx.Err())
		}
	}
	if err := publishCommands(ctx, obs.js, connName(0), roomIDs, emu.user.ID, rooms, "warm"); err != nil {
		return rate{}, err
	}
	if err := wait("warm-up"); err != nil {
		return rate{}, err
	}
	target.Store(int64(rooms + n))
	cpu0 := cpuTime()
	start := time.Now()
	if err := publishCommands(ctx, obs.js, connName(0), roomIDs, emu.user.ID, n, "cmd"); err != nil {
		return rate{}, err
	}
	if err := wait("run"); err != nil {
		return rate{}, err
	}
	return rate{perSec: perSecond(n, time.Since(start)), cpu: (cpuTime() - cpu0) / time.Duration(n)}, nil
}

// roundTrips are managed-dispatch latencies.
type roundTrips struct {
	full   latencies     // platform send → the platform sees /processed
	worker latencies     // platform send → the worker receives the request
	cpu    time.Duration // process CPU per message: emulator, bridge, NATS, worker
}

// dispatchRoundTrip runs a bridge with a [[dispatch]] rule for
// message_created and a worker (queue group on P.work…) that answers
// "processed" at once, posts DispatchRate messages a second over
// DispatchRooms rooms for DispatchDuration, and measures each message's
// round trip from the emulator's send (timestamp in the content) to the
// completion of its /processed call on the emulator, and to the worker.
func (e *Env) dispatchRoundTrip(ctx context.Context) (roundTrips, error) {
	emu, err := startEmu(emuOptions(), 1, e.plan.DispatchRooms)
	if err != nil {
		return roundTrips{}, err
	}
	defer emu.close()
	dir := e.dir()
	defer e.removeDir(dir)
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	rule := &config.Dispatch{Events: []string{"message_created"}, Timeout: config.Duration(10 * time.Second), MaxAttempts: 5, MaxInFlightPerRoom: 1}
	b, err := startBridge(ctx, bridgeSpec{emuURL: emu.url, agents: emu.agents, storeDir: dir, log: e.log, dispatch: rule})
	if err != nil {
		return roundTrips{}, err
	}
	defer func() { _ = b.stop() }()
	obs, err := newObserver(ctx, b.info.NATSClientURL)
	if err != nil {
		return roundTrips{}, err
	}
	defer obs.close()

	var mu sync.Mutex
	var toWorker latencies
	processed := []byte(`{"status":"processed"}`)
	sub, err := obs.nc.QueueSubscribe("bridge.work.band."+connName(0)+".>", "bench-workers", func(m *nats.Msg) {
		now := time.Now()
		if sent := sentTime(m.Data); sent != 0 {
			mu.Lock()
			toWorker = append(toWorker, now.Sub(time.Unix(0, sent)))
			mu.Unlock()
		}
		_ = m.Respond(processed)
	})
	if err != nil {
		return roundTrips{}, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := obs.nc.Flush(); err != nil {
		return roundTrips{}, err
	}

	rooms := emu.agents[0].RoomIDs
	post := func(i int) (string, time.Time) {
		now := time.Now()
		m := emu.emu.PostUserMessage(rooms[i%len(rooms)], emu.user.ID, benchContent(i, now))
		return m.ID, now
	}
	// Warm-up: one message per room, all processed.
	var warm []string
	for i := range rooms {
		id, _ := post(i)
		warm = append(warm, id)
	}
	if _, err := waitProcessed(ctx, emu.emu, warm); err != nil {
		return roundTrips{}, fmt.Errorf("warm-up: %w", err)
	}
	mu.Lock()
	toWorker = toWorker[:0]
	mu.Unlock()

	n := e.dispatchCount()
	ids := make([]string, 0, n)
	sent := make(map[string]time.Time, n)
	cpu0 := cpuTime()
	_ = e.paced(n, func(i int) error { // post never fails
		id, at := post(i)
		ids = append(ids, id)
		sent[id] = at
		return nil
	})
	done, err := waitProcessed(ctx, emu.emu, ids)
	if err != nil {
		return roundTrips{}, err
	}
	rt := roundTrips{full: make(latencies, 0, n), cpu: (cpuTime() - cpu0) / time.Duration(n)}
	for _, id := range ids {
		rt.full = append(rt.full, done[id].Sub(sent[id]))
	}
	mu.Lock()
	rt.worker = append(rt.worker, toWorker...)
	mu.Unlock()
	return rt, nil
}

// dispatchCount is the number of messages of one paced dispatch run.
func (e *Env) dispatchCount() int {
	return int(float64(e.plan.DispatchRate) * e.plan.DispatchDuration.Seconds())
}

// paced calls send(i) for i in [0, n) at DispatchRate a second, and stops
// at the first error.
func (e *Env) paced(n int, send func(i int) error) error {
	interval := time.Second / time.Duration(e.plan.DispatchRate)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		if err := send(i); err != nil {
			return err
		}
	}
	return nil
}

// waitProcessed polls until every message is processed for the default
// agent and returns when each /processed call completed (emulator clock).
func waitProcessed(ctx context.Context, emu *bandemu.Server, ids []string) (map[string]time.Time, error) {
	done := make(map[string]time.Time, len(ids))
	pending := ids
	for {
		var still []string
		for _, id := range pending {
			status, attempts := emu.Status(id)
			if status != bandemu.StatusProcessed || len(attempts) == 0 {
				if status == bandemu.StatusFailed {
					return nil, fmt.Errorf("message %s failed: %s", id, attempts[len(attempts)-1].Error)
				}
				still = append(still, id)
				continue
			}
			done[id] = attempts[len(attempts)-1].CompletedAt
		}
		if len(still) == 0 {
			return done, nil
		}
		pending = still
		select {
		case <-ctx.Done():
			return nil, errors.Join(fmt.Errorf("%d of %d messages not processed", len(still), len(ids)), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// sentTime extracts the send timestamp benchContent wrote, 0 if none.
func sentTime(data []byte) int64 {
	i := bytes.Index(data, []byte(sentMark))
	if i < 0 {
		return 0
	}
	j := i + len(sentMark)
	k := j
	for k < len(data) && data[k] >= '0' && data[k] <= '9' {
		k++
	}
	v, _ := strconv.ParseInt(string(data[j:k]), 10, 64)
	return v
}
