package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bridgeworks/bridge/emulator/agentconnectemu"
)

// cmdEmulateAgentConnect runs the AgentConnect emulator alone, with an
// HTTP control that plays the platform's side (notices, cooldown, stop,
// drops, token expiry). args are the flags after "emulate agentconnect"
// (a leading "agentconnect" is skipped).
func cmdEmulateAgentConnect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "agentconnect" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("emulate agentconnect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8000", "address to serve the emulator on")
	control := fs.String("control", "127.0.0.1:8001", `address of the control API ("none" to disable)`)
	password := fs.String("password", "", `password of the user "`+agentconnectemu.DefaultUser+`" (default: random)`)
	tokenLifetime := fs.Duration("token-lifetime", 30*time.Minute, "lifetime of an access token")
	ping := fs.Duration("ping-interval", 30*time.Second, "period of the JSON ping on each socket")
	replyTimeout := fs.Duration("reply-timeout", 30*time.Second, `wait for the AI before the "taking longer" notice`)
	budget := fs.Int("token-budget", 3000, "AI tokens per minute before a cooldown (-1: none)")
	maxTurns := fs.Int("max-turns", 20, "messages an AI takes from one partner before stop (-1: no limit)")
	sessions := fs.Int("max-sessions-per-user", 5, "live sessions per user (-1: no limit)")
	noLimits := fs.Bool("no-rate-limits", false, "turn the per-route rate limits off")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: emulate agentconnect: unexpected argument %q", errUsage, fs.Arg(0))
	}
	for name, d := range map[string]time.Duration{"token-lifetime": *tokenLifetime, "ping-interval": *ping, "reply-timeout": *replyTimeout} {
		if d <= 0 {
			return fmt.Errorf("%w: emulate agentconnect: --%s must be positive, got %s", errUsage, name, d)
		}
	}
	for name, n := range map[string]int{"token-budget": *budget, "max-turns": *maxTurns, "max-sessions-per-user": *sessions} {
		if n == 0 || n < -1 {
			return fmt.Errorf("%w: emulate agentconnect: --%s must be positive or -1, got %d", errUsage, name, n)
		}
	}
	emu := agentconnectemu.New(agentconnectemu.Options{Password: *password, TokenLifetime: *tokenLifetime,
		PingInterval: *ping, ReplyTimeout: *replyTimeout, TokenBudget: *budget, MaxTurns: *maxTurns,
		MaxSessionsPerUser: *sessions, NoRateLimits: *noLimits})
	defer emu.Close()
	var ctl net.Listener
	if *control != "none" {
		var err error
		if ctl, err = net.Listen("tcp", *control); err != nil {
			return fmt.Errorf("control: %w", err)
		}
		defer ctl.Close()
	}
	base := "http://" + *listen
	fmt.Fprintf(stdout, `AgentConnect emulator on %s
  user     = %s
  password = %s   (export AGENTCONNECT_PASSWORD=%s)

Log in, create a session, then open its socket:
  curl -s -XPOST %s%s -d username=%s -d password="$AGENTCONNECT_PASSWORD"
  curl -s -XPOST %s%s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"session_type":"human_agent","agents":{"primary":{"provider":"groq"}}}'
  ws://%s%s<session_id>?token=$TOKEN
`, base, agentconnectemu.DefaultUser, emu.Password(), emu.Password(),
		base, agentconnectemu.LoginPath, agentconnectemu.DefaultUser, base, agentconnectemu.CreatePath, *listen, agentconnectemu.SocketPrefix)
	g, gctx := errgroup.WithContext(ctx)
	if ctl != nil {
		c := "http://" + ctl.Addr().String()
		fmt.Fprintf(stdout, `
Play the platform through the control API on %s:
  curl -s %s/sessions
  curl -s %s/sessions/<id>/received
  curl -s -XPOST %s/sessions/<id>/system -d '{"content": "Session is being closed by the owner."}'
  curl -s -XPOST %s/sessions/<id>/cooldown -d '{"seconds": 30}'
  curl -s -XPOST %s/sessions/<id>/stop
  curl -s -XPOST %s/sessions/<id>/drop
  curl -s -XPOST %s/users/%s/expire-tokens
`, c, c, c, c, c, c, c, c, agentconnectemu.DefaultUser)
		srv := &http.Server{Handler: (&acControl{emu: emu}).handler(), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			if err := srv.Serve(ctl); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("control: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			return srv.Close()
		})
	}
	g.Go(func() error { return emu.ListenAndServe(gctx, *listen) })
	return g.Wait()
}

// acControl is the HTTP control of `bridge emulate agentconnect`.
type acControl struct{ emu *agentconnectemu.Server }

func (c *acControl) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sessions", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, c.emu.Sessions())
	})
	mux.HandleFunc("GET /sessions/{id}/received", c.withSession(func(w http.ResponseWriter, _ *http.Request, id string) {
		writeJSON(w, http.StatusOK, nonNil(c.emu.Received(id)))
	}))
	mux.HandleFunc("GET /sessions/{id}/broadcasts", c.withSession(func(w http.ResponseWriter, _ *http.Request, id string) {
		writeJSON(w, http.StatusOK, nonNil(c.emu.Broadcasts(id)))
	}))
	mux.HandleFunc("POST /sessions/{id}/system", c.withSession(func(w http.ResponseWriter, r *http.Request, id string) {
		var body struct {
			Content string `json:"content"`
		}
		if err := decodeControl(r, &body); err != nil || body.Content == "" {
			writeError(w, http.StatusBadRequest, fmt.Errorf(`body: want {"content": "<notice>"}: %v`, err))
			return
		}
		c.emu.SendSystem(id, body.Content)
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST /sessions/{id}/cooldown", c.withSession(func(w http.ResponseWriter, r *http.Request, id string) {
		var body struct {
			Seconds float64 `json:"seconds"`
		}
		if err := decodeControl(r, &body); err != nil || body.Seconds <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf(`body: want {"seconds": <positive number>}: %v`, err))
			return
		}
		c.emu.ForceCooldown(id, time.Duration(body.Seconds*float64(time.Second)))
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST /sessions/{id}/stop", c.withSession(func(w http.ResponseWriter, _ *http.Request, id string) {
		c.emu.ForceStop(id)
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST /sessions/{id}/drop", c.withSession(func(w http.ResponseWriter, _ *http.Request, id string) {
		writeJSON(w, http.StatusOK, map[string]int{"dropped": c.emu.DropSockets(id)})
	}))
	mux.HandleFunc("POST /users/{name}/expire-tokens", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]int{"expired": c.emu.ExpireTokens(r.PathValue("name"))})
	})
	return mux
}

func (c *acControl) withSession(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if _, ok := c.emu.Session(id); !ok {
			writeError(w, http.StatusNotFound, fmt.Errorf("session %q: no such session (GET /sessions lists them)", id))
			return
		}
		h(w, r, id)
	}
}

func decodeControl(r *http.Request, dst any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxControlBody))
	dec.DisallowUnknownFields()
	return dec.Decode(dst)
}

func nonNil(fs []agentconnectemu.Frame) []agentconnectemu.Frame {
	if fs == nil {
		return []agentconnectemu.Frame{}
	}
	return fs
}
