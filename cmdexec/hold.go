package cmdexec

import (
	"context"
	"sync"
	"time"

	"github.com/bridgeworks/bridge/retry"
)

// holds are the rooms resting after a command failed with
// [connector.HoldRoom]: the room's next command waits until the hold ends;
// other rooms go on. A hold is forgotten once it is over.
type holds struct {
	mu    sync.Mutex
	until map[string]time.Time
}

// hold makes room's next command wait d (a later end wins).
func (h *holds) hold(room string, d time.Duration) {
	end := time.Now().Add(d)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.until == nil {
		h.until = map[string]time.Time{}
	}
	if end.After(h.until[room]) {
		h.until[room] = end
	}
}

// wait blocks while room is held. It returns false, with what was left of
// the hold, when stop ends first.
func (h *holds) wait(stop context.Context, room string) (time.Duration, bool) {
	for {
		h.mu.Lock()
		end, ok := h.until[room]
		left := time.Until(end)
		if ok && left <= 0 {
			delete(h.until, room)
		}
		h.mu.Unlock()
		if !ok || left <= 0 {
			return 0, true
		}
		if !retry.Sleep(stop, left) {
			return max(time.Until(end), 0), false
		}
	}
}
