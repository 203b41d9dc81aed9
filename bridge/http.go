package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpServer serves /healthz, /readyz, /status and /metrics.
type httpServer struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	ready   *atomic.Bool // streams provisioned
	board   *statusBoard
	m       *metrics
	started time.Time
	natsURL string
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
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{
			"started":     h.started,
			"ready":       len(why) == 0,
			"not_ready":   why,
			"nats":        map[string]any{"connected": h.nc.IsConnected(), "streams_ready": h.ready.Load(), "client_url": h.natsURL},
			"connections": conns,
		})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(h.m.reg, promhttp.HandlerOpts{Registry: h.m.reg}))
	return mux
}

// notReady says why the bridge is not ready, nothing when it is. Ready
// means: connected to NATS, streams provisioned, JetStream answering, and no
// enabled connection held up by JetStream (a lease it cannot take or renew,
// events it cannot store; see ConnStatus.NATSErrors). A connection standing
// by while another live process holds it is ready; the platform side
// (connecting, reconnecting, failed) is shown on /status and does not count.
func (h *httpServer) notReady(ctx context.Context, conns []ConnStatus) []string {
	if !h.nc.IsConnected() {
		return []string{"nats not connected"}
	}
	if !h.ready.Load() {
		return []string{"streams not ready"}
	}
	var why []string
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := h.js.AccountInfo(ctx); err != nil {
		why = append(why, "jetstream not answering: "+err.Error())
	}
	for _, c := range conns {
		for _, what := range slices.Sorted(maps.Keys(c.NATSErrors)) {
			why = append(why, fmt.Sprintf("connection %s: %s: %s", c.Name, what, c.NATSErrors[what]))
		}
	}
	return why
}

// serve listens on addr and serves until ctx ends; ready receives the bound
// address once listening.
func (h *httpServer) serve(ctx context.Context, addr string, ready func(string)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	ready(ln.Addr().String())
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
