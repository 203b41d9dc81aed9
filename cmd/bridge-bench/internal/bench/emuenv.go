package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/bridgeworks/bridge/emulator/bandemu"
)

// agentRoom is one emulated agent with the room it listens to.
type agentRoom struct {
	AgentID string   `json:"id"`
	Key     string   `json:"key"`
	RoomIDs []string `json:"rooms,omitempty"`
}

func (a agentRoom) room() string { return a.RoomIDs[0] }

// emuEnv is a Band emulator with agents, each in its own rooms with one
// human user who posts.
type emuEnv struct {
	emu    *bandemu.Server
	url    string
	user   bandemu.User
	agents []agentRoom
}

// emuOptions are the emulator settings of every scenario: a write queue
// large enough that a burst never closes a socket as too slow (the
// producer holds back on its own, see pushN).
func emuOptions() bandemu.Options {
	return bandemu.Options{WriteQueueSize: 1 << 16}
}

// startEmu starts an emulator with n agents (the default one first), each
// owning rooms rooms shared with one user.
func startEmu(opts bandemu.Options, n, rooms int) (*emuEnv, error) {
	emu := bandemu.New(opts)
	url, err := emu.Start()
	if err != nil {
		return nil, err
	}
	e := &emuEnv{emu: emu, url: url, user: emu.AddUser("Bench User")}
	for i := range n {
		a := emu.Agent()
		if i > 0 {
			a = emu.AddAgent("Bench Agent " + strconv.Itoa(i))
		}
		ar := agentRoom{AgentID: a.ID, Key: a.APIKey}
		for j := range rooms {
			r := emu.AddRoomFor(a.ID, fmt.Sprintf("room %d.%d", i, j), e.user.ID)
			ar.RoomIDs = append(ar.RoomIDs, r.ID)
		}
		e.agents = append(e.agents, ar)
	}
	return e, nil
}

func (e *emuEnv) close() { e.emu.Close() }

func (e *emuEnv) socketURL(a agentRoom) string {
	return e.emu.SocketURL() + "?vsn=2.0.0&agent_id=" + a.AgentID + "&api_key=" + a.Key
}

// highWater is how many frames may wait in one socket's write queue
// before the producer holds back: enough to keep the writer busy, far
// from the queue's limit.
const highWater = 512

// pushN posts n messages from the user, round-robin over the agents'
// first rooms, each mentioning the room's agent, as fast as the sockets
// are read: while an agent's socket has highWater frames queued, the
// producer waits for it to drain. content gives message i's text.
func (e *emuEnv) pushN(ctx context.Context, n int, content func(i int) string) error {
	for i := range n {
		a := e.agents[i%len(e.agents)]
		for e.emu.QueuedFrames(a.AgentID) >= highWater {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(50 * time.Microsecond)
		}
		if m := e.emu.PostUserMessage(a.room(), e.user.ID, content(i)); m.ID == "" {
			return fmt.Errorf("emulator refused message %d", i)
		}
	}
	return nil
}

// benchContent is a message text of about 200 bytes, like a short chat
// question, carrying the send time for latency measurements.
func benchContent(i int, sent time.Time) string {
	var b strings.Builder
	b.Grow(220)
	b.WriteString("@Bench Agent question ")
	b.WriteString(strconv.Itoa(i))
	b.WriteString(" t=")
	b.WriteString(strconv.FormatInt(sent.UnixNano(), 10))
	b.WriteString(" — could you summarise yesterday's incident report and list the follow-up actions with their owners?")
	return b.String()
}
