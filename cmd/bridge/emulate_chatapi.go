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

	"github.com/bridgeworks/bridge/emulator/chatapiemu"
)

// cmdEmulateChatAPI runs the Chat API emulator alone. args are its flags
// (a leading "chatapi" is skipped).
func cmdEmulateChatAPI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "chatapi" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("emulate chatapi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:4100", "address to serve the emulator on")
	agents := fs.Int("agents", 1, "agents to create, each with its own agent-scoped key")
	teamMode := fs.String("team-mode", "auto", `default chat mode of a team of every agent ("none": no team)`)
	rate := fs.Int("rate-limit", 0, "requests per minute allowed per key (0: unlimited)")
	control := fs.String("control", "127.0.0.1:4101", `address of the control API ("none" to disable)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: emulate chatapi takes no arguments, got %q", errUsage, fs.Args())
	}
	if *agents < 1 {
		return fmt.Errorf("%w: --agents must be at least 1", errUsage)
	}
	if *rate < 0 {
		return fmt.Errorf("%w: --rate-limit must not be negative", errUsage)
	}
	emu := chatapiemu.New(chatapiemu.Options{RateLimit: *rate})
	defer emu.Close()
	for i := 2; i <= *agents; i++ {
		emu.AddAgent(fmt.Sprintf("Assistant %d", i))
	}
	var team chatapiemu.Team
	if *teamMode != "none" {
		var ids []string
		for _, a := range emu.Agents() {
			ids = append(ids, a.ID)
		}
		var err error
		if team, err = emu.AddTeam("Team", *teamMode, ids...); err != nil {
			return fmt.Errorf("%w: --team-mode: %q is not one of %s or none", errUsage, *teamMode, strings.Join(chatapiemu.ChatModes, ", "))
		}
	}
	var ctl net.Listener
	if *control != "none" {
		var err error
		if ctl, err = net.Listen("tcp", *control); err != nil {
			return fmt.Errorf("control: %w", err)
		}
		defer ctl.Close()
	}

	base := "http://" + *listen + chatapiemu.DefaultBasePath
	fmt.Fprintf(stdout, "Chat API emulator on %s (send Authorization: Bearer <key>)\n  global key = %s   (export CHATAPI_API_KEY=%s)\n",
		base, emu.APIKey(), emu.APIKey())
	for _, a := range emu.Agents() {
		fmt.Fprintf(stdout, "  agent %q id = %s, agent key = %s\n", a.Name, a.ID, a.APIKey)
	}
	if team.ID != "" {
		fmt.Fprintf(stdout, "  team %q id = %s, mode %s, team key = %s\n", team.Name, team.ID, team.ChatMode, team.APIKey)
	}
	first := emu.AgentID()
	fmt.Fprintf(stdout, `
Try it:
  curl -s -H "Authorization: Bearer $CHATAPI_API_KEY" -d '{"message":"hello"}' %s/agents/%s/chat
  curl -sN -H "Authorization: Bearer $CHATAPI_API_KEY" -d '{"message":"hello"}' %s/agents/%s/chat/stream
  curl -s -H "Authorization: Bearer $CHATAPI_API_KEY" %s/agents/%s/history
`, base, first, base, first, base, first)

	g, gctx := errgroup.WithContext(ctx)
	if ctl != nil {
		c := "http://" + ctl.Addr().String()
		fmt.Fprintf(stdout, `
Play the platform through the control API on %s:
  curl -s %s/agents
  curl -s -XPOST %s/agents/%s/inbox -d '{"content":"Stand-up in 5 minutes","type":"reminder"}'
  curl -s -XPUT %s/agents/%s/script -d '{"text":"Scripted answer.","fragments":4}'
  curl -s -XPOST %s/faults/stream -d '{"kind":"cut","after":2}'
`, c, c, c, first, c, first, c)
		srv := &http.Server{Handler: (&chatapiControl{emu: emu}).handler(), ReadHeaderTimeout: 5 * time.Second}
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

// chatapiControl is the HTTP control of `bridge emulate chatapi`: it
// plays the platform side a client cannot reach through the API.
//
//	GET  /agents                   agents with keys, turn, post and unread counts
//	GET  /agents/{id}/history      every turn
//	GET  /agents/{id}/inbox        every inbox item, with its read time
//	POST /agents/{id}/inbox        {"content", "type"?}: an agent-initiated message
//	PUT  /agents/{id}/script       {"text", "fragments"?, "tool_calls"?: [{"name","args","result"}]}
//	POST /faults/stream            {"kind": "cut"|"stall"|"error", "agent_id"?, "after"?, "message"?}
//	POST /faults/release           end every stall
//	POST /faults/http              {"count", "status", "retry_after_seconds"?}
type chatapiControl struct {
	emu *chatapiemu.Server
}

func (c *chatapiControl) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /agents", c.agents)
	mux.HandleFunc("GET /agents/{id}/history", c.history)
	mux.HandleFunc("GET /agents/{id}/inbox", c.inbox)
	mux.HandleFunc("POST /agents/{id}/inbox", c.addInbox)
	mux.HandleFunc("PUT /agents/{id}/script", c.script)
	mux.HandleFunc("POST /faults/stream", c.streamFault)
	mux.HandleFunc("POST /faults/release", func(w http.ResponseWriter, _ *http.Request) {
		c.emu.ReleaseStalls()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /faults/http", c.httpFault)
	return mux
}

// chatapiDecode reads a JSON body into dst, refusing unknown fields.
func chatapiDecode(w http.ResponseWriter, r *http.Request, dst any, want string) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxControlBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("body: want %s: %w", want, err))
		return false
	}
	return true
}

func (c *chatapiControl) agent(w http.ResponseWriter, r *http.Request) (chatapiemu.Agent, bool) {
	a, ok := c.emu.Agent(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("agent %q: no such agent (GET /agents lists them)", r.PathValue("id")))
	}
	return a, ok
}

func (c *chatapiControl) agents(w http.ResponseWriter, _ *http.Request) {
	type view struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		APIKey    string `json:"api_key"`
		Turns     int    `json:"turns"`
		ChatPosts int    `json:"chat_posts"`
		Unread    int    `json:"unread"`
	}
	out := []view{}
	for _, a := range c.emu.Agents() {
		unread := 0
		for _, it := range c.emu.InboxItems(a.ID) {
			if !it.Read() {
				unread++
			}
		}
		out = append(out, view{a.ID, a.Name, a.APIKey, len(c.emu.History(a.ID)), c.emu.ChatPosts(a.ID), unread})
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *chatapiControl) history(w http.ResponseWriter, r *http.Request) {
	if a, ok := c.agent(w, r); ok {
		out := []map[string]any{}
		for _, t := range c.emu.History(a.ID) {
			out = append(out, map[string]any{"role": t.Role, "content": t.Content, "created_at": t.CreatedAt,
				"conversation_id": t.ConversationID})
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func (c *chatapiControl) inbox(w http.ResponseWriter, r *http.Request) {
	if a, ok := c.agent(w, r); ok {
		out := []map[string]any{}
		for _, it := range c.emu.InboxItems(a.ID) {
			v := map[string]any{"id": it.ID, "type": it.Type, "content": it.Content, "created_at": it.CreatedAt, "read": it.Read()}
			if it.Read() {
				v["read_at"] = it.ReadAt
			}
			out = append(out, v)
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func (c *chatapiControl) addInbox(w http.ResponseWriter, r *http.Request) {
	a, ok := c.agent(w, r)
	var body struct{ Content, Type string }
	if !ok || !chatapiDecode(w, r, &body, `{"content": "…", "type": "…"}`) {
		return
	}
	if strings.TrimSpace(body.Content) == "" {
		writeError(w, http.StatusBadRequest, errors.New("content: empty"))
		return
	}
	it, err := c.emu.AddInboxItem(a.ID, chatapiemu.InboxItem{Content: body.Content, Type: body.Type})
	if err != nil {
		writeError(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": it.ID, "type": it.Type, "content": it.Content, "created_at": it.CreatedAt})
}

func (c *chatapiControl) script(w http.ResponseWriter, r *http.Request) {
	a, ok := c.agent(w, r)
	var body struct {
		Text      string `json:"text"`
		Fragments int    `json:"fragments"`
		ToolCalls []struct {
			Name   string         `json:"name"`
			Args   map[string]any `json:"args"`
			Result string         `json:"result"`
		} `json:"tool_calls"`
	}
	if !ok || !chatapiDecode(w, r, &body, `{"text": "…", "fragments": n, "tool_calls": [{"name","args","result"}]}`) {
		return
	}
	if body.Fragments < 0 {
		writeError(w, http.StatusBadRequest, errors.New("fragments: must not be negative"))
		return
	}
	sc := chatapiemu.Script{Text: body.Text, Fragments: body.Fragments}
	for _, tc := range body.ToolCalls {
		sc.ToolCalls = append(sc.ToolCalls, chatapiemu.ToolCall{Name: tc.Name, Args: tc.Args, Result: tc.Result})
	}
	c.emu.SetScript(a.ID, sc)
	w.WriteHeader(http.StatusNoContent)
}

func (c *chatapiControl) streamFault(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Kind    string `json:"kind"`
		AgentID string `json:"agent_id"`
		After   int    `json:"after"`
		Message string `json:"message"`
	}
	if !chatapiDecode(w, r, &body, `{"kind": "cut"|"stall"|"error", "agent_id": "…", "after": n}`) {
		return
	}
	kinds := map[string]chatapiemu.StreamFaultKind{"cut": chatapiemu.StreamCut, "stall": chatapiemu.StreamStall, "error": chatapiemu.StreamError}
	kind, ok := kinds[body.Kind]
	if !ok {
		writeError(w, http.StatusBadRequest, fmt.Errorf("kind: %q is not cut, stall or error", body.Kind))
		return
	}
	if body.After < 0 {
		writeError(w, http.StatusBadRequest, errors.New("after: must not be negative"))
		return
	}
	if _, known := c.emu.Agent(body.AgentID); body.AgentID != "" && !known {
		writeError(w, http.StatusNotFound, fmt.Errorf("agent_id %q: no such agent", body.AgentID))
		return
	}
	c.emu.InjectStreamFault(body.AgentID, chatapiemu.StreamFault{Kind: kind, After: body.After, Message: body.Message})
	w.WriteHeader(http.StatusNoContent)
}

func (c *chatapiControl) httpFault(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Count      int `json:"count"`
		Status     int `json:"status"`
		RetryAfter int `json:"retry_after_seconds"`
	}
	if !chatapiDecode(w, r, &body, `{"count": n, "status": 429|500|503…, "retry_after_seconds": n}`) {
		return
	}
	if body.Count < 1 || body.Status < 400 || body.Status > 599 || body.RetryAfter < 0 {
		writeError(w, http.StatusBadRequest, errors.New("want count >= 1, status 400..599, retry_after_seconds >= 0"))
		return
	}
	c.emu.FailNext(body.Count, body.Status, time.Duration(body.RetryAfter)*time.Second)
	w.WriteHeader(http.StatusNoContent)
}
