package cmdexec

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

// rpcQueue is the queue group of every bridge serving P.rpc….
const rpcQueue = "bridge"

// rpcServer answers P.rpc.<platform>.<conn>.<command> requests. The
// subscription delivers through the process's natsbus.Mux (one channel and
// one goroutine for every connection's subscription); its callback only
// queues a request (or refuses it when the bounded queue is full, so a
// flood fails loudly instead of growing memory); up to RPCWorkers
// goroutines execute them, started on demand and gone when the queue is
// empty, so an idle connection costs none.
type rpcServer struct {
	mux *natsbus.Mux
	sub *nats.Subscription
	wg  sync.WaitGroup
	max int
	// parent is Start's ctx, kept for the requests' hard context, which
	// the first request makes from it (an idle connection's would be
	// 0.1 KiB); drainRPC cancels it at the drain deadline.
	parent context.Context

	mu     sync.Mutex
	closed bool
	active int            // workers running
	q      chan *nats.Msg // made by the first request: an idle connection's would be half a KiB
	hard   context.Context
	cancel context.CancelFunc
}

func (e *Executor) startRPC(ctx context.Context, mux *natsbus.Mux) (_ *rpcServer, err error) {
	subj := e.conn.Filter(subjects.KindRPC)
	defer wrapErr(&err, "rpc subscribe %s", subj)
	s := &rpcServer{mux: mux, max: e.o.RPCWorkers, parent: ctx}
	s.sub, err = mux.QueueSubscribe(e.o.NC, subj, rpcQueue, func(m *nats.Msg) { e.offerRPC(s, m) })
	if err != nil {
		return nil, err
	}
	return s, nil
}

// work serves queued requests until the queue is empty.
func (e *Executor) work(hard context.Context, s *rpcServer) {
	for {
		select {
		case m, ok := <-s.q:
			if !ok {
				return
			}
			e.serveRPC(hard, m)
			continue
		default:
		}
		s.mu.Lock()
		if len(s.q) == 0 {
			s.active--
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// offerRPC runs on the Mux's goroutine, shared by every connection, and
// must not block.
func (e *Executor) offerRPC(s *rpcServer, m *nats.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if m.Reply != "" && !e.replyAllowed(m.Reply, replyPathRPC, e.log.With().Str("subject", m.Subject).Logger()) {
		return // neither executed nor answered
	}
	if s.q == nil {
		s.q = make(chan *nats.Msg, 4*s.max)
	}
	select {
	case s.q <- m:
		if s.active < s.max {
			s.active++
			if s.hard == nil {
				s.hard, s.cancel = context.WithCancel(context.WithoutCancel(s.parent))
			}
			hard := s.hard
			s.wg.Go(func() { e.work(hard, s) })
		}
	default:
		subj, _ := e.conn.ParseLoose(subjects.KindRPC, m.Subject)
		name := subj.Name
		e.m.outcome(name, outcomeRejected)
		e.log.Warn().Str("subject", m.Subject).Int("queued", len(s.q)).Msg("rpc refused: all workers busy")
		e.respond(m, subjects.Result{CommandID: nuid.Next(), Command: name, Attempts: 0,
			Error: &subjects.Error{Code: subjects.ErrCodeUnavailable, Message: "busy: too many requests in progress", Retryable: true}})
	}
}

// stop ends the subscription; queued requests are still served.
func (s *rpcServer) stop() {
	_ = s.mux.Unsubscribe(s.sub)
	s.mu.Lock()
	s.closed = true
	if s.q != nil {
		close(s.q)
	}
	s.mu.Unlock()
}

// cancelHard cancels the requests' calls, if any request came.
func (s *rpcServer) cancelHard() {
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// wait blocks until every queued request has been answered.
func (s *rpcServer) wait() { s.wg.Wait() }

func (e *Executor) serveRPC(ctx context.Context, m *nats.Msg) {
	if m.Reply == "" {
		e.log.Warn().Str("subject", m.Subject).Msg("rpc request without a reply subject; ignored")
		return
	}
	cmd, err := e.parseRPC(m)
	if err != nil {
		if cmd.ID == "" {
			cmd.ID = nuid.Next()
		}
		e.m.outcome(cmd.Name, outcomeBadRequest)
		e.log.Info().Str("subject", m.Subject).Str("id", cmd.ID).Msg("rpc: bad request")
		e.respond(m, badRequestResult(cmd, err))
		return
	}
	// A caller's own id marks a request it may be retrying: ask the store.
	cmd.MaybeExecuted = cmd.ID != ""
	e.respond(m, e.Do(ctx, cmd))
}

func (e *Executor) respond(m *nats.Msg, res subjects.Result) {
	b, err := json.Marshal(claimcheck.FitResult(res, e.o.NC.MaxPayload()))
	if err == nil {
		err = m.Respond(b)
	}
	if err != nil {
		e.log.Warn().Err(err).Str("subject", m.Subject).Msg("rpc reply not sent")
	}
}

// parseRPC reads an RPC request: the command from the subject, the JSON
// object body as its arguments, and an optional "room" string field, which
// is taken out of the arguments.
func (e *Executor) parseRPC(m *nats.Msg) (connector.Command, error) {
	s, err := e.conn.ParseLoose(subjects.KindRPC, m.Subject)
	cmd := connector.Command{ID: m.Header.Get(subjects.HeaderMsgID), Name: s.Name}
	if err != nil || !validName(s.Name) {
		return cmd, connector.BadRequest("command", "subject %q: want <command> after the connection", m.Subject)
	}
	args, err := normalizeArgs(m.Data)
	if err != nil {
		return cmd, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(args, &obj); err != nil {
		return cmd, connector.BadRequest("body", "not a JSON object: %v", err)
	}
	if raw, ok := obj["room"]; ok {
		var room string
		if err := json.Unmarshal(raw, &room); err != nil {
			return cmd, connector.BadRequest("room", "not a string")
		}
		delete(obj, "room")
		if args, err = json.Marshal(obj); err != nil {
			return cmd, fmt.Errorf("re-encode arguments: %w", err)
		}
		cmd.Room = room
	}
	cmd.Args = args
	return cmd, nil
}
