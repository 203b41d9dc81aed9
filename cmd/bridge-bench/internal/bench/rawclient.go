package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// rawClient is the least a Phoenix Channels client can be: one socket,
// one chat_room join, a heartbeat. Baselines read through it so that
// their cost is the platform's wire plus JSON, nothing of the bridge.
type rawClient struct {
	ws   *websocket.Conn
	refs atomic.Uint64
}

func dialRaw(ctx context.Context, url string) (*rawClient, error) {
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("raw client: dial: %w", err)
	}
	ws.SetReadLimit(1 << 20)
	return &rawClient{ws: ws}, nil
}

func (c *rawClient) ref() string { return strconv.FormatUint(c.refs.Add(1), 10) }

// join joins topic and waits for the reply; nothing else is expected on
// the socket before it.
func (c *rawClient) join(ctx context.Context, topic string) error {
	ref := c.ref()
	frame := `["` + ref + `","` + ref + `",` + strconv.Quote(topic) + `,"phx_join",{}]`
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		return fmt.Errorf("raw client: join: %w", err)
	}
	for {
		_, data, err := c.ws.Read(ctx)
		if err != nil {
			return fmt.Errorf("raw client: join reply: %w", err)
		}
		var parts []json.RawMessage
		if json.Unmarshal(data, &parts) != nil || len(parts) != 5 {
			continue
		}
		if string(parts[1]) == `"`+ref+`"` && string(parts[3]) == `"phx_reply"` {
			var p struct{ Status string }
			_ = json.Unmarshal(parts[4], &p)
			if p.Status != "ok" {
				return fmt.Errorf("raw client: join %s: %s", topic, parts[4])
			}
			return nil
		}
	}
}

// run starts the heartbeat and reads frames into onFrame until ctx ends
// or the socket fails; it owns both goroutines and returns when they end.
func (c *rawClient) run(ctx context.Context, heartbeat time.Duration, onFrame func(data []byte)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			hb := `[null,"` + c.ref() + `","phoenix","heartbeat",{}]`
			if c.ws.Write(ctx, websocket.MessageText, []byte(hb)) != nil {
				cancel()
				return
			}
		}
	})
	for {
		_, data, err := c.ws.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("raw client: read: %w", err)
		}
		onFrame(data)
	}
}

func (c *rawClient) close() { _ = c.ws.CloseNow() }
