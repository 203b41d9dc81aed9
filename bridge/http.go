package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpServer serves /healthz, /readyz, /status, /metrics and, when
// enabled, /debug/pprof/. It serves from Run's first moment, before NATS
// is reached: /healthz answers at once (the process is alive) and /readyz
// names what it still waits for.
type httpServer struct {
	bus     atomic.Pointer[natsHandles] // nil until the first connect
	ready   atomic.Bool                 // streams provisioned
	board   *statusBoard
	cluster atomic.Pointer[cluster] // nil until NATS is up
	m       *metrics
	started time.Time
	target  string // where NATS is sought, redacted, for /readyz before the first connect
	pprof   bool
}

// natsHandles are the NATS connection and its JetStream context, with the
// URL workers use (redacted).
type natsHandles struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	natsURL string
}

func (h *httpServer) natsConnected() bool {
	b := h.bus.Load()
	return b != nil && b.nc.IsConnected()
}

func (h *httpServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if why := h.notReady(r.Context(), h.board.snapshot()); len(why) > 0 {
			http.Error(w, "not ready: "+strings.Join(why, "; "), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		conns := h.board.snapshot()
		why := h.notReady(r.Context(), conns)
		nst := map[string]any{"connected": false, "streams_ready": h.ready.Load()}
		if b := h.bus.Load(); b != nil {
			nst["connected"], nst["client_url"] = b.nc.IsConnected(), b.natsURL
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		body := map[string]any{
			"started":     h.started,
			"ready":       len(why) == 0,
			"not_ready":   why,
			"nats":        nst,
			"connections": conns,
		}
		if cl := h.cluster.Load(); cl != nil {
			members, leases := cl.snapshot()
			body["cluster"] = map[string]any{"self": cl.self.String(), "members": members, "leases": leases}
		}
		_ = enc.Encode(body)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(h.m.reg, promhttp.HandlerOpts{Registry: h.m.reg}))
	if h.pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index) // also serves the named profiles (heap, goroutine, …)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// notReady says why the bridge is not ready, nothing when it is. Ready
// means: connected to NATS, streams provisioned, JetStream answering, and no
// enabled connection held up by JetStream (a lease it cannot take or renew,
// events it cannot store; see ConnStatus.NATSErrors). A connection standing
// by while another live process holds it is ready; the platform side
// (connecting, reconnecting, superseded, refused, failed) is shown on
// /status and does not count: readiness gates what a restart or a
// rescheduling can fix, and neither fixes a platform that refuses a key or
// a session held elsewhere (a new pod would meet the same answer, and a
// pod marked unready would also stop serving what works: its other
// connections, the commands already stored).
func (h *httpServer) notReady(ctx context.Context, conns []ConnStatus) []string {
	b := h.bus.Load()
	if b == nil {
		return []string{"nats not connected yet: connecting to " + h.target}
	}
	if !b.nc.IsConnected() {
		return []string{"nats not connected"}
	}
	if !h.ready.Load() {
		return []string{"streams not ready"}
	}
	var why []string
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := b.js.AccountInfo(ctx); err != nil {
		why = append(why, "jetstream not answering: "+err.Error())
	}
	for _, c := range conns {
		for _, what := range slices.Sorted(maps.Keys(c.NATSErrors)) {
			why = append(why, fmt.Sprintf("connection %s: %s: %s", c.Name, what, c.NATSErrors[what]))
		}
	}
	return why
}

// serve serves on ln until ctx ends.
func (h *httpServer) serve(ctx context.Context, ln net.Listener) error {
	var err error
	srv := &http.Server{Handler: h.handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }() // owned: ended by Shutdown below
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
