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
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bridgeworks/bridge/emulator/polyaiemu"
)

// cmdEmulatePolyAI runs the PolyAI Messaging API emulator alone, with an
// HTTP control that speaks for the PolyAI agent and the live agent.
// args are the flags after "emulate polyai" (a leading "polyai" is
// skipped).
func cmdEmulatePolyAI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "polyai" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("emulate polyai", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:4200", "address to serve the emulator on")
	control := fs.String("control", "127.0.0.1:4201", `address of the control API that speaks for the agents ("none" to disable)`)
	token := fs.String("connector-token", "", "connector token clients send as X-Token (default: random)")
	host := fs.String("host", polyaiemu.DefaultHost, "host identifier clients send as X-Host (a subdomain of a web origin is accepted)")
	idle := fs.Duration("idle-timeout", 10*time.Minute, "end sessions without inbound events for this long")
	quiet := fs.Bool("no-auto-reply", false, "the agent answers only through the control API")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: emulate polyai takes no arguments, got %q", errUsage, fs.Args())
	}
	if *idle <= 0 {
		return fmt.Errorf("%w: --idle-timeout must be positive", errUsage)
	}
	if strings.TrimSpace(*host) == "" {
		return fmt.Errorf("%w: --host must not be empty", errUsage)
	}
	emu := polyaiemu.New(polyaiemu.Options{ConnectorToken: *token, Host: *host,
		IdleTimeout: *idle, NoAutoReply: *quiet})
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
	fmt.Fprintf(stdout, `PolyAI Messaging API emulator on %s
  REST      %s/api/v1/access-token, %s/api/v1/sessions
  socket    ws://%s/ws
  X-Token   %s   (export POLYAI_CONNECTOR_TOKEN=%s)
  X-Host    %s

Try it:
  curl -s -XPOST %s/api/v1/access-token -H "X-Token: $POLYAI_CONNECTOR_TOKEN" -H 'X-Host: %s' -d '{}'
`, base, base, base, *listen, emu.ConnectorToken(), emu.ConnectorToken(), *host, base, *host)
	g, gctx := errgroup.WithContext(ctx)
	if ctl != nil {
		c := "http://" + ctl.Addr().String()
		fmt.Fprintf(stdout, `
Speak for the agents through the control API on %s:
  curl -s %s/sessions
  curl -s %s/sessions/<session id>
  curl -s -XPOST %s/sessions/<session id>/say -d '{"text": "hello"}'
  curl -s -XPOST %s/sessions/<session id>/handoff -d '{"mode": "server", "agent": "Sam"}'
  curl -s -XPOST %s/sessions/<session id>/live -d '{"text": "Sam here"}'
  curl -s -XPOST %s/sessions/<session id>/end -d '{"reason": "REASON_NATURAL_END"}'
  curl -s -XPOST %s/sessions/<session id>/drop
`, c, c, c, c, c, c, c, c)
		srv := &http.Server{Handler: (&polyaiControl{emu: emu}).handler(), ReadHeaderTimeout: 5 * time.Second}
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
	g.Go(func() error {
		err := emu.ListenAndServe(gctx, *listen)
		if errors.Is(err, http.ErrServerClosed) || errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	})
	return g.Wait()
}

// polyaiControl is the HTTP control of `bridge emulate polyai`:
//
//	GET  /sessions                  every session
//	GET  /sessions/{id}             one session with the user messages it received
//	POST /sessions/{id}/say         {"text"}: the PolyAI agent speaks
//	POST /sessions/{id}/handoff     {"mode": "server"|"client", "queue", "agent", "reason"}
//	POST /sessions/{id}/live        {"text"}: the live agent speaks; {"leave": true} ends the chat
//	POST /sessions/{id}/end         {"reason"}: SESSION_END (default REASON_NATURAL_END)
//	POST /sessions/{id}/drop        drop the session's sockets
type polyaiControl struct {
	emu *polyaiemu.Server
}

type polyaiControlBody struct {
	Text   string `json:"text"`
	Mode   string `json:"mode"`
	Queue  string `json:"queue"`
	Agent  string `json:"agent"`
	Reason string `json:"reason"`
	Leave  bool   `json:"leave"`
}

type polyaiSessionView struct {
	ID        string   `json:"id"`
	Streaming bool     `json:"streaming"`
	Agent     string   `json:"agent"`
	Ended     bool     `json:"ended"`
	EndReason string   `json:"end_reason,omitempty"`
	Sockets   int      `json:"sockets"`
	Messages  int      `json:"messages"`
	Received  []string `json:"received,omitempty"`
}

func (c *polyaiControl) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sessions", c.list)
	mux.HandleFunc("GET /sessions/{id}", c.get)
	mux.HandleFunc("POST /sessions/{id}/{action}", c.act)
	return mux
}

func polyaiView(s polyaiemu.SessionInfo) polyaiSessionView {
	return polyaiSessionView{ID: s.ID, Streaming: s.Streaming, Agent: string(s.Agent), Ended: s.Ended,
		EndReason: s.EndReason, Sockets: s.Sockets, Messages: s.Messages}
}

func (c *polyaiControl) list(w http.ResponseWriter, _ *http.Request) {
	out := []polyaiSessionView{}
	for _, s := range c.emu.Sessions() {
		out = append(out, polyaiView(s))
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *polyaiControl) get(w http.ResponseWriter, r *http.Request) {
	info, ok := c.emu.Session(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("session %q: no such session (GET /sessions lists them)", r.PathValue("id")))
		return
	}
	v := polyaiView(info)
	for _, m := range c.emu.UserMessages(info.ID) {
		v.Received = append(v.Received, m.Text)
	}
	writeJSON(w, http.StatusOK, v)
}

func (c *polyaiControl) act(w http.ResponseWriter, r *http.Request) {
	id, action := r.PathValue("id"), r.PathValue("action")
	info, ok := c.emu.Session(id)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("session %q: no such session (GET /sessions lists them)", id))
		return
	}
	var body polyaiControlBody
	dec := json.NewDecoder(io.LimitReader(r.Body, maxControlBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("body: %w", err))
		return
	}
	var done bool
	switch action {
	case "say":
		if strings.TrimSpace(body.Text) == "" {
			writeError(w, http.StatusBadRequest, errors.New("text: empty"))
			return
		}
		done = c.emu.Say(id, polyaiemu.AgentMessage{Text: body.Text})
	case "handoff":
		switch body.Mode {
		case "", "server":
			h := polyaiemu.ServerHandoff{Queue: body.Queue, QueueUpdates: 1}
			if body.Agent != "" {
				h.Agent = polyaiemu.LiveAgent{ID: "live-" + strings.ToLower(strings.ReplaceAll(body.Agent, " ", "-")), Name: body.Agent}
			}
			done = c.emu.Handoff(id, h)
		case "client":
			done = c.emu.ClientHandoff(id, body.Reason, body.Queue)
		default:
			writeError(w, http.StatusBadRequest, fmt.Errorf("mode %q: want server or client", body.Mode))
			return
		}
	case "live":
		switch {
		case body.Leave:
			done = c.emu.LiveAgentLeave(id)
		case strings.TrimSpace(body.Text) == "":
			writeError(w, http.StatusBadRequest, errors.New("text: empty (or send {\"leave\": true})"))
			return
		default:
			done = c.emu.LiveAgentSay(id, body.Text)
		}
	case "end":
		reason := body.Reason
		if reason == "" {
			reason = polyaiemu.ReasonNaturalEnd
		}
		if !strings.HasPrefix(reason, "REASON_") {
			writeError(w, http.StatusBadRequest, fmt.Errorf("reason %q: want REASON_USER_END, REASON_USER_ABANDONED or REASON_NATURAL_END", reason))
			return
		}
		done = c.emu.EndSession(id, reason)
	case "drop":
		c.emu.DropSockets(id)
		done = true
	default:
		writeError(w, http.StatusNotFound, fmt.Errorf("action %q: want say, handoff, live, end or drop", action))
		return
	}
	if !done {
		writeError(w, http.StatusConflict, fmt.Errorf("session %q: %s not possible now (agent %s, ended %v)", id, action, info.Agent, info.Ended))
		return
	}
	info, _ = c.emu.Session(id)
	writeJSON(w, http.StatusOK, polyaiView(info))
}
