package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/subjects"
)

// kind is what reads the emulator's pushes.
type kind int

const (
	// kindSource only counts message frames: the emulator's own ceiling.
	kindSource kind = iota
	// kindBaseline is baseline 1: raw WebSocket → JSON decode →
	// JetStream PublishAsync (window 256), no bridge.
	kindBaseline
	// kindBridge is the bridge with one [[connection]] per agent.
	kindBridge
)

func (k kind) String() string {
	return [...]string{"source", "baseline 1", "bridge"}[k]
}

// baselineWindow is baseline 1's PublishAsync window.
const baselineWindow = 256

// rawHeartbeat is the raw clients' heartbeat interval (Band's default).
const rawHeartbeat = 30 * time.Second

// pipeline is one consumer of the emulator's pushes, started for one
// measurement.
type pipeline struct {
	kind kind
	emu  *emuEnv

	nats   *natsEnv   // baseline 1
	bridge *bridgeRun // bridge
	obs    *observer  // baseline 1 and bridge

	// source: frames counted, and when the count reached target.
	frames  atomic.Int64
	target  atomic.Int64
	reached chan time.Time

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errMu  sync.Mutex
	err    error // first client failure
}

// startPipeline connects a consumer of kind k to every agent of emu. dir
// is a fresh JetStream store directory.
func startPipeline(ctx context.Context, k kind, emu *emuEnv, dir string, e *Env) (_ *pipeline, err error) {
	p := &pipeline{kind: k, emu: emu, reached: make(chan time.Time, 1)}
	p.target.Store(-1)
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if k == kindBridge {
		p.bridge, err = startBridge(ctx, bridgeSpec{emuURL: emu.url, agents: emu.agents, storeDir: dir, log: e.log})
		if err != nil {
			return p, err
		}
		p.obs, err = newObserver(ctx, p.bridge.info.NATSClientURL)
		return p, err
	}
	if k == kindBaseline {
		if p.nats, err = startNATS(ctx, dir, baselineWindow, e.log); err != nil {
			return p, err
		}
		if p.obs, err = newObserver(ctx, p.nats.url()); err != nil {
			return p, err
		}
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	for i, a := range emu.agents {
		c, err := dialRaw(ctx, emu.socketURL(a))
		if err != nil {
			return p, err
		}
		if err := c.join(ctx, "chat_room:"+a.room()); err != nil {
			c.close()
			return p, err
		}
		onFrame := p.count
		if k == kindBaseline {
			onFrame = p.publisher(connName(i))
		}
		p.wg.Go(func() {
			defer c.close()
			if err := c.run(rctx, rawHeartbeat, onFrame); err != nil {
				p.fail(err)
			}
		})
	}
	return p, nil
}

func (p *pipeline) fail(err error) {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

func (p *pipeline) failure() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

const messageCreated = `"message_created"`

// count is the source reader: it counts message_created frames.
func (p *pipeline) count(data []byte) {
	if !bytes.Contains(data[:min(len(data), 160)], []byte(messageCreated)) {
		return
	}
	if n := p.frames.Add(1); n == p.target.Load() {
		p.reached <- time.Now()
	}
}

// publisher returns baseline 1's frame handler for one connection:
// decode the frame and the fields a bridge needs (id for deduplication,
// room from the topic), then PublishAsync the payload with Nats-Msg-Id.
func (p *pipeline) publisher(conn string) func([]byte) {
	js := p.nats.js
	return func(data []byte) {
		var parts []json.RawMessage
		if json.Unmarshal(data, &parts) != nil || len(parts) != 5 || string(parts[3]) != `"message_created"` {
			return
		}
		var topic string
		var m struct {
			ID         string    `json:"id"`
			SenderID   string    `json:"sender_id"`
			InsertedAt time.Time `json:"inserted_at"`
		}
		if json.Unmarshal(parts[2], &topic) != nil || json.Unmarshal(parts[4], &m) != nil {
			p.fail(errors.New("baseline 1: undecodable push"))
			return
		}
		room := strings.TrimPrefix(topic, "chat_room:")
		msg := nats.NewMsg("bridge.evt.band." + conn + "." + subjects.EscapeToken(room) + ".message_created")
		msg.Data = parts[4]
		msg.Header.Set(subjects.HeaderMsgID, "band:"+conn+":"+m.ID)
		for {
			_, err := js.PublishMsgAsync(msg)
			if err == nil {
				return
			}
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				p.fail(fmt.Errorf("baseline 1: publish: %w", err))
				return
			}
		}
	}
}

// warmUp posts one message to every agent and waits until all are
// stored (or counted): every socket is then joined and the path warm.
func (p *pipeline) warmUp(ctx context.Context) error {
	n := len(p.emu.agents)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if p.kind == kindSource {
		p.target.Store(int64(n))
		if err := p.emu.pushN(ctx, n, func(i int) string { return benchContent(i, time.Now()) }); err != nil {
			return err
		}
		_, err := p.waitCounted(ctx)
		return err
	}
	if err := p.emu.pushN(ctx, n, func(i int) string { return benchContent(i, time.Now()) }); err != nil {
		return err
	}
	_, err := p.obs.waitCount(ctx, evtFilter, uint64(n), 5*time.Millisecond)
	return p.orFailure(err)
}

func (p *pipeline) orFailure(err error) error {
	if f := p.failure(); f != nil {
		return errors.Join(f, err)
	}
	return err
}

// waitCounted returns when the source counted its target.
func (p *pipeline) waitCounted(ctx context.Context) (time.Time, error) {
	select {
	case t := <-p.reached:
		return t, nil
	case <-ctx.Done():
		return time.Time{}, p.orFailure(fmt.Errorf("counted %d of %d frames: %w", p.frames.Load(), p.target.Load(), ctx.Err()))
	}
}

// rate is the outcome of one throughput measurement.
type rate struct {
	perSec float64       // events stored (source: counted) per second
	cpu    time.Duration // process CPU time per event: emulator, consumer and NATS together
}

// throughput pushes n events as fast as they are read and returns the
// rate at which they were stored (source: counted), from the first post
// to the last one seen.
func (p *pipeline) throughput(ctx context.Context, n int) (rate, error) {
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	var base uint64
	if p.kind == kindSource {
		p.target.Store(p.frames.Load() + int64(n))
	} else {
		var err error
		if base, _, err = p.obs.count(ctx, evtFilter); err != nil {
			return rate{}, err
		}
	}
	cpu0 := cpuTime()
	start := time.Now()
	pushErr := make(chan error, 1)
	go func() { // owned: its result is received below
		pushErr <- p.emu.pushN(ctx, n, func(i int) string { return benchContent(i, time.Now()) })
	}()
	var end time.Time
	var err error
	if p.kind == kindSource {
		end, err = p.waitCounted(ctx)
	} else {
		end, err = p.obs.waitCount(ctx, evtFilter, base+uint64(n), 2*time.Millisecond)
		err = p.orFailure(err)
	}
	if perr := <-pushErr; perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return rate{}, err
	}
	return rate{perSec: perSecond(n, end.Sub(start)), cpu: (cpuTime() - cpu0) / time.Duration(n)}, nil
}

// close stops the consumer and everything it started.
func (p *pipeline) close() {
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait()
	if p.obs != nil {
		p.obs.close()
	}
	if p.bridge != nil {
		_ = p.bridge.stop()
	}
	if p.nats != nil {
		p.nats.close()
	}
}
