package phoenix_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/bridgeworks/bridge/internal/phoenix"
	"github.com/rs/zerolog"
)

// Example shows the lifecycle: build a socket, run it, join a channel,
// and stop for good when the server says this session was superseded.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var s *phoenix.Socket
	s = phoenix.NewSocket(phoenix.Options{
		URL:               "wss://example.com/socket/websocket?vsn=2.0.0&token=KEY",
		Header:            http.Header{"X-Api-Key": {"KEY"}},
		HeartbeatInterval: 30 * time.Second,
		Logger:            zerolog.New(os.Stderr),
		OnOpen:            func(attempt int) { /* resync state the socket may have missed */ },
	})
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	control := s.Channel("control:me", nil, func(event string, payload json.RawMessage) {
		if event == "supersede" {
			s.Stop(errors.New("superseded by a newer session"))
		}
	})
	joinCtx, joinCancel := context.WithTimeout(ctx, time.Minute)
	defer joinCancel()
	if _, err := control.Join(joinCtx); err != nil {
		var re *phoenix.ReplyError
		if errors.As(err, &re) {
			_ = re.Reason() // the server refused the join
		}
	}

	cancel()
	<-done
}
