package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// scale measures the bridge's memory and goroutines per idle Band agent
// connection. For each size N (and for N = 0, the bridge's fixed cost) a
// fresh platform child (emulator + NATS) and a fresh bridge child run; the
// bridge child reports its RSS, Go heap+stack and goroutines after every
// connection finished its first catch-up and then idled for ScaleSettle
// with heartbeats every ScaleHeartbeat. Per connection = (M(N) − M(0)) / N.
func (e *Env) scale(ctx context.Context, run int) error {
	need := uint64(2*slicesMax(e.plan.ScaleSizes) + 512)
	if lim := fileLimit(); lim < need {
		e.note("scale: RLIMIT_NOFILE is %d; %d connections need about %d descriptors per process (socket + REST keep-alive each)", lim, slicesMax(e.plan.ScaleSizes), need)
	}
	zero, err := e.scaleOnce(ctx, 0)
	if err != nil {
		return fmt.Errorf("0 conns: %w", err)
	}
	e.logf("   bridge with 0 connections: RSS %d KiB, heap %d KiB, stack %d KiB, %d goroutines",
		zero.After.RSSKiB, zero.After.HeapKiB, zero.After.StackKiB, zero.After.Goroutines)
	prev := zero
	for _, n := range e.plan.ScaleSizes {
		if prev.Conns > 0 && e.plan.ScaleMaxRSS > 0 {
			perConn := float64(prev.After.RSSKiB-zero.After.RSSKiB) / float64(prev.Conns) * 1024
			if proj := perConn * float64(n); proj > float64(e.plan.ScaleMaxRSS) {
				e.note("scale: %d connections skipped: at about %.1f MiB per connection (measured with %d) the bridge would need about %.0f GiB, over the %.1f GiB allowed on this shared machine (Plan.ScaleMaxRSS).",
					n, perConn/(1<<20), prev.Conns, proj/(1<<30), float64(e.plan.ScaleMaxRSS)/(1<<30))
				e.c.note("scale", fmt.Sprintf("%d idle Band agent connections: RSS per connection", n), "KiB", "skipped: projected memory too large")
				continue
			}
		}
		r, err := e.scaleOnce(ctx, n)
		if err != nil {
			return fmt.Errorf("%d conns: %w", n, err)
		}
		per := func(a, b int64) float64 { return float64(a-b) / float64(n) }
		rss := per(r.After.RSSKiB, zero.After.RSSKiB)
		heap := per(r.After.HeapKiB+r.After.StackKiB, zero.After.HeapKiB+zero.After.StackKiB)
		gor := float64(r.After.Goroutines-zero.After.Goroutines) / float64(n)
		e.logf("   %5d idle connections: connected in %.1f s; RSS %d KiB (%.1f KiB/conn), heap+stack %.1f KiB/conn, %.2f goroutines/conn, %d fds",
			n, r.ConnectSec, r.After.RSSKiB, rss, heap, gor, r.After.FDs)
		name := fmt.Sprintf("%d idle Band agent connections", n)
		e.c.add("scale", name+": RSS per connection", "KiB", rss)
		e.c.add("scale", name+": Go heap+stack per connection", "KiB", heap)
		e.c.add("scale", name+": goroutines per connection", "count", gor)
		e.c.add("scale", name+": file descriptors per connection", "count", float64(r.After.FDs-zero.After.FDs)/float64(n))
		e.c.add("scale", name+": time until all connected and caught up", "s", r.ConnectSec)
		if prev.Conns > 0 {
			e.c.add("scale", fmt.Sprintf("marginal RSS per connection, %d → %d", prev.Conns, n), "KiB",
				float64(r.After.RSSKiB-prev.After.RSSKiB)/float64(n-prev.Conns))
		}
		prev = r
	}
	e.note("scale: each agent owns %d room(s) (chat_room and room_participants joined); heartbeat every %s; memory read after %s idle, after a GC with freed memory returned to the OS; the bridge runs alone in its process with NATS and the emulator in another.",
		e.plan.ScaleRooms, e.plan.ScaleHeartbeat, e.plan.ScaleSettle)
	return nil
}

func slicesMax(s []int) int {
	m := 0
	for _, v := range s {
		m = max(m, v)
	}
	return m
}

// scaleOnce runs scaleAttempt, retrying once after a bridge child that
// crashed (a bug the measurement must not hide: it is noted).
func (e *Env) scaleOnce(ctx context.Context, n int) (bridgeResult, error) {
	r, err := e.scaleAttempt(ctx, n)
	var crash *childCrash
	if errors.As(err, &crash) && ctx.Err() == nil {
		e.note("scale: the bridge child with %d connections crashed (%s); the measurement was retried. See its stderr above.", n, crash.err)
		r, err = e.scaleAttempt(ctx, n)
	}
	return r, err
}

// childCrash is a bridge child that exited abnormally.
type childCrash struct{ err error }

func (c *childCrash) Error() string { return "bridge child: " + c.err.Error() }

// scaleAttempt runs a platform child and a bridge child with n connections.
func (e *Env) scaleAttempt(ctx context.Context, n int) (bridgeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	plat := exec.CommandContext(ctx, e.self, childEmulator, "-agents", strconv.Itoa(n), "-rooms", strconv.Itoa(e.plan.ScaleRooms))
	plat.Stderr = os.Stderr
	platIn, err := plat.StdinPipe()
	if err != nil {
		return bridgeResult{}, err
	}
	platOut, err := plat.StdoutPipe()
	if err != nil {
		return bridgeResult{}, err
	}
	if err := plat.Start(); err != nil {
		return bridgeResult{}, fmt.Errorf("platform child: %w", err)
	}
	defer func() {
		platIn.Close() // the child exits at stdin EOF
		_ = plat.Wait()
	}()
	var info platformInfo
	if err := json.NewDecoder(bufio.NewReader(platOut)).Decode(&info); err != nil {
		return bridgeResult{}, fmt.Errorf("platform child: %w", err)
	}

	bs := bridgeSpecJSON{Platform: info, Heartbeat: e.plan.ScaleHeartbeat, Settle: e.plan.ScaleSettle, Timeout: 150 * time.Second}
	if e.profiles != "" && n > 0 {
		bs.Profile = fmt.Sprintf("%s.scale-%d", e.profiles, n)
	}
	spec, _ := json.Marshal(bs)
	br := exec.CommandContext(ctx, e.self, childBridge)
	br.Stderr = os.Stderr
	br.Stdin = bytes.NewReader(spec)
	out, err := br.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return bridgeResult{}, &childCrash{err: err}
		}
		return bridgeResult{}, err
	}
	var res bridgeResult
	if err := json.Unmarshal(out, &res); err != nil {
		return bridgeResult{}, fmt.Errorf("bridge child output: %w", err)
	}
	return res, nil
}
