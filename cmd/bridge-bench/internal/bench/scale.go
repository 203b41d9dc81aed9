package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/bridgeworks/bridge/emulator/bandemu"
)

// scale measures the bridge's memory and goroutines per idle Band agent
// connection, and the NATS server's beside it. For each size N (and for
// N = 0, the fixed cost) a fresh emulator child, NATS child and bridge
// child run; the bridge child reports its RSS, Go heap+stack and
// goroutines after every connection finished its first catch-up and then
// idled for ScaleSettle with heartbeats every ScaleHeartbeat, and the NATS
// child its own while the connections stay open. Per connection =
// (M(N) − M(0)) / N. The start-up time comes with the emulator's busiest
// second of socket dials.
func (e *Env) scale(ctx context.Context, run int) error {
	need := uint64(2*slicesMax(e.plan.ScaleSizes) + 512)
	if lim := fileLimit(); lim < need {
		e.note("scale: RLIMIT_NOFILE is %d; %d connections need about %d descriptors per process (socket + REST keep-alive each)", lim, slicesMax(e.plan.ScaleSizes), need)
	}
	zero, err := e.scaleOnce(ctx, 0)
	if err != nil {
		return fmt.Errorf("0 conns: %w", err)
	}
	z := zero.Bridge.After
	e.logf("   bridge with 0 connections: RSS %d KiB, heap %d KiB, stack %d KiB, %d goroutines; NATS server RSS %d KiB",
		z.RSSKiB, z.HeapKiB, z.StackKiB, z.Goroutines, zero.NATS.RSSKiB)
	prev := zero
	for _, n := range e.plan.ScaleSizes {
		if prev.Bridge.Conns > 0 && e.plan.ScaleMaxRSS > 0 {
			perConn := float64(prev.Bridge.After.RSSKiB-z.RSSKiB+prev.NATS.RSSKiB-zero.NATS.RSSKiB) / float64(prev.Bridge.Conns) * 1024
			if proj := perConn * float64(n); proj > float64(e.plan.ScaleMaxRSS) {
				e.note("scale: %d connections skipped: at about %.1f KiB per connection (bridge and NATS server, measured with %d) they would need about %.1f GiB, over the %.1f GiB allowed on this shared machine (Plan.ScaleMaxRSS).",
					n, perConn/1024, prev.Bridge.Conns, proj/(1<<30), float64(e.plan.ScaleMaxRSS)/(1<<30))
				e.c.note("scale", fmt.Sprintf("%d idle Band agent connections: RSS per connection", n), "KiB", "skipped: projected memory too large")
				continue
			}
		}
		r, err := e.scaleOnce(ctx, n)
		if err != nil {
			return fmt.Errorf("%d conns: %w", n, err)
		}
		e.scaleFigures(zero, prev, r)
		prev = r
	}
	e.note("scale: each agent owns %d room(s) (chat_room and room_participants joined); heartbeat every %s; memory read after %s idle, after four GCs with freed memory returned to the OS; the emulator, the NATS server and the bridge run in three processes; sockets are dialled at the bridge's [dial] rate 1000/s, burst 100.",
		e.plan.ScaleRooms, e.plan.ScaleHeartbeat, e.plan.ScaleSettle)
	return nil
}

// scaleFigures records the figures of one size against the fixed cost
// (zero) and the previous size (prev, for the marginal cost).
func (e *Env) scaleFigures(zero, prev, r scaleResult) {
	n := r.Bridge.Conns
	b, z := r.Bridge.After, zero.Bridge.After
	per := func(a, b int64) float64 { return float64(a-b) / float64(n) }
	rss := per(b.RSSKiB, z.RSSKiB)
	heap := per(b.HeapKiB+b.StackKiB, z.HeapKiB+z.StackKiB)
	gor := per(int64(b.Goroutines), int64(z.Goroutines))
	natsRSS := per(r.NATS.RSSKiB, zero.NATS.RSSKiB)
	natsHeap := per(r.NATS.HeapKiB+r.NATS.StackKiB, zero.NATS.HeapKiB+zero.NATS.StackKiB)
	e.logf("   %5d idle connections: connected and caught up in %.1f s (busiest dial second %d, busiest 3 s %d, %d dials); bridge RSS %d KiB (%.1f KiB/conn), heap+stack %.1f KiB/conn (heap %.1f of which live objects %.1f, stack %.1f), %.2f goroutines/conn, %d fds; NATS server RSS %d KiB (%.1f KiB/conn)",
		n, r.Bridge.ConnectSec, r.Dials.MaxPerSecond, r.Dials.MaxPer3Seconds, r.Dials.Total, b.RSSKiB, rss, heap, per(b.HeapKiB, z.HeapKiB), per(b.LiveKiB, z.LiveKiB), per(b.StackKiB, z.StackKiB), gor, b.FDs, r.NATS.RSSKiB, natsRSS)
	name := fmt.Sprintf("%d idle Band agent connections", n)
	e.c.add("scale", name+": RSS per connection", "KiB", rss)
	e.c.add("scale", name+": Go heap+stack per connection", "KiB", heap)
	e.c.add("scale", name+": goroutines per connection", "count", gor)
	e.c.add("scale", name+": file descriptors per connection", "count", float64(b.FDs-z.FDs)/float64(n))
	e.c.add("scale", name+": NATS server RSS per connection", "KiB", natsRSS)
	e.c.add("scale", name+": NATS server Go heap+stack per connection", "KiB", natsHeap)
	e.c.add("scale", name+": time until all connected and caught up", "s", r.Bridge.ConnectSec)
	e.c.add("scale", name+": busiest second of socket dials (emulator)", "dials", float64(r.Dials.MaxPerSecond))
	e.c.add("scale", name+": busiest 3 seconds of socket dials (emulator)", "dials", float64(r.Dials.MaxPer3Seconds))
	if r.Restart.Conns > 0 {
		e.logf("   %5d idle connections, restarted: connected and caught up in %.1f s (%d dials, busiest second %d, busiest 3 s %d)",
			n, r.Restart.ConnectSec, r.RestartDials.Total, r.RestartDials.MaxPerSecond, r.RestartDials.MaxPer3Seconds)
		e.c.add("scale", name+", restart: time until all connected and caught up", "s", r.Restart.ConnectSec)
		e.c.add("scale", name+", restart: busiest second of socket dials (emulator)", "dials", float64(r.RestartDials.MaxPerSecond))
	}
	if p := prev.Bridge.Conns; p > 0 {
		d := float64(n - p)
		span := fmt.Sprintf("%d → %d", p, n)
		e.c.add("scale", "marginal RSS per connection, "+span, "KiB", float64(b.RSSKiB-prev.Bridge.After.RSSKiB)/d)
		e.c.add("scale", "marginal goroutines per connection, "+span, "count", float64(b.Goroutines-prev.Bridge.After.Goroutines)/d)
		e.c.add("scale", "marginal NATS server RSS per connection, "+span, "KiB", float64(r.NATS.RSSKiB-prev.NATS.RSSKiB)/d)
	}
}

func slicesMax(s []int) int {
	m := 0
	for _, v := range s {
		m = max(m, v)
	}
	return m
}

// scaleResult is one size's measurement: the bridge child's result, the
// NATS child's memory meanwhile and the emulator's dial counts.
type scaleResult struct {
	Bridge bridgeResult
	NATS   MemSnapshot
	Dials  bandemu.DialStats
	// Restart and RestartDials are a second bridge process's start against
	// the same NATS server and platform (with Plan.ScaleRestart).
	Restart      bridgeResult
	RestartDials bandemu.DialStats
}

// scaleOnce runs scaleAttempt, retrying once after a bridge child that
// crashed (a bug the measurement must not hide: it is noted).
func (e *Env) scaleOnce(ctx context.Context, n int) (scaleResult, error) {
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

// scaleTimeout bounds a bridge child with n connections: start-up at the
// dial rate and the JetStream set-up of each connection, then the settle.
func (e *Env) scaleTimeout(n int) time.Duration {
	return 90*time.Second + time.Duration(n)*15*time.Millisecond + e.plan.ScaleSettle
}

// scaleAttempt runs an emulator child, a NATS child and a bridge child
// with n connections.
func (e *Env) scaleAttempt(ctx context.Context, n int) (scaleResult, error) {
	timeout := e.scaleTimeout(n)
	ctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	plat, err := e.startChild(ctx, childEmulator, nil, "-agents", strconv.Itoa(n), "-rooms", strconv.Itoa(e.plan.ScaleRooms))
	if err != nil {
		return scaleResult{}, err
	}
	defer plat.close()
	var info platformInfo
	if err := plat.read(&info); err != nil {
		return scaleResult{}, err
	}
	var natsArgs []string
	if e.profiles != "" && n > 0 {
		natsArgs = []string{"-cpuprofile", fmt.Sprintf("%s.scale-%d.nats.cpu", e.profiles, n)}
	}
	nc, err := e.startChild(ctx, childNATS, nil, natsArgs...)
	if err != nil {
		return scaleResult{}, err
	}
	defer nc.close()
	var ni natsInfo
	if err := nc.read(&ni); err != nil {
		return scaleResult{}, err
	}

	bs := bridgeSpecJSON{EmulatorURL: info.URL, NATS: ni.URL, Agents: info.Agents, Heartbeat: e.plan.ScaleHeartbeat, Settle: e.plan.ScaleSettle, Timeout: timeout}
	if e.profiles != "" && n > 0 {
		bs.Profile = fmt.Sprintf("%s.scale-%d", e.profiles, n)
	}
	br, err := e.startChild(ctx, childBridge, bs)
	if err != nil {
		return scaleResult{}, err
	}
	var res scaleResult
	if err := br.read(&res.Bridge); err != nil {
		if werr := br.close(); werr != nil {
			var ee *exec.ExitError
			if errors.As(werr, &ee) {
				return scaleResult{}, &childCrash{err: werr}
			}
		}
		return scaleResult{}, err
	}
	// The bridge's connections are still open: the server holds their
	// consumers, subscriptions and keys now.
	err = errors.Join(nc.ask(reqMem, &res.NATS), plat.ask(reqDials, &res.Dials))
	restart := err == nil && e.plan.ScaleRestart && n > 0
	if restart { // the restart's dials are counted from here
		var ok struct{}
		err = plat.ask(reqMark, &ok)
	}
	if cerr := br.close(); err == nil && cerr != nil {
		err = fmt.Errorf("bridge child: %w", cerr)
	}
	if restart && err == nil {
		// A restart: the first process stopped (its leases released), a
		// new one starts with the same configuration against the same NATS
		// server (streams and consumers there) and platform.
		res.Restart, res.RestartDials, err = e.restartBridge(ctx, bs, plat)
	}
	return res, err
}

// restartBridge runs a second bridge child with spec (no profile) until it
// reports, and returns its result and the dials the emulator saw since its
// mark.
func (e *Env) restartBridge(ctx context.Context, spec bridgeSpecJSON, plat *child) (bridgeResult, bandemu.DialStats, error) {
	spec.Profile = ""
	br, err := e.startChild(ctx, childBridge, spec)
	if err != nil {
		return bridgeResult{}, bandemu.DialStats{}, err
	}
	var res bridgeResult
	var dials bandemu.DialStats
	err = br.read(&res)
	if err == nil {
		err = plat.ask(reqDialsSinceMark, &dials)
	}
	if cerr := br.close(); err == nil && cerr != nil {
		err = fmt.Errorf("restarted bridge child: %w", cerr)
	}
	return res, dials, err
}

// child is a running child process of the bench binary (see child.go for
// the protocol).
type child struct {
	mode string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *json.Decoder
	done bool
}

// startChild starts the bench binary in mode with args, writing input (if
// not nil) as its first stdin line. Its stderr goes to ours.
func (e *Env) startChild(ctx context.Context, mode string, input any, args ...string) (*child, error) {
	cmd := exec.CommandContext(ctx, e.self, append([]string{mode}, args...)...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", mode, err)
	}
	c := &child{mode: mode, cmd: cmd, in: in, out: json.NewDecoder(bufio.NewReader(out))}
	if input != nil {
		if err := json.NewEncoder(in).Encode(input); err != nil {
			_ = c.close()
			return nil, fmt.Errorf("%s: %w", mode, err)
		}
	}
	return c, nil
}

// read decodes the child's next JSON line into v.
func (c *child) read(v any) error {
	if err := c.out.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", c.mode, err)
	}
	return nil
}

// ask sends one request line and decodes the answer into v.
func (c *child) ask(req string, v any) error {
	if _, err := io.WriteString(c.in, req+"\n"); err != nil {
		return fmt.Errorf("%s: %s: %w", c.mode, req, err)
	}
	return c.read(v)
}

// close ends the child (stdin EOF) and waits for it, killing it after
// childStopWait (a NATS server with 10,000 consumers was seen to hang in
// its shutdown); idempotent.
func (c *child) close() error {
	if c.done {
		return nil
	}
	c.done = true
	c.in.Close()
	t := time.AfterFunc(childStopWait, func() { _ = c.cmd.Process.Kill() })
	defer t.Stop()
	return c.cmd.Wait()
}

// childStopWait is how long a child may take to stop at stdin EOF.
const childStopWait = 30 * time.Second
