package bench

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Plan sizes a benchmark run. [FullPlan] and [QuickPlan] are the two
// presets; any field may be changed before [Run].
type Plan struct {
	Mode string // "full" or "quick", for the report
	Runs int    // runs per figure; each figure is the median of these

	// InboundEvents is the number of events pushed per measurement of the
	// inbound scenario (each of source, baseline 1 and bridge, over 1 and
	// over InboundConns connections).
	InboundEvents int
	InboundConns  int // the "many connections" case, 100

	// LatencyRate is the paced send rate (events/s) of the latency
	// scenario, over LatencyDuration per measurement.
	LatencyRate     int
	LatencyDuration time.Duration

	// CommandsCount is the number of commands per baseline-2 measurement;
	// CommandsRooms the parallel rooms (the executor's default
	// max_parallel_rooms is 16).
	CommandsCount int
	CommandsRooms int
	// DispatchRate and DispatchDuration pace the dispatch scenario: the
	// managed-dispatch round trip and the straight-line dispatch baseline.
	DispatchRate     int
	DispatchDuration time.Duration
	DispatchRooms    int // the rooms the rate is spread over

	// ScaleSizes are the idle connection counts of the scale scenario;
	// ScaleHeartbeat the connector's heartbeat interval there and
	// ScaleSettle how long the connections idle (heartbeats running)
	// before memory is read.
	ScaleSizes     []int
	ScaleRuns      int // runs of the scale scenario when not 0 (it is slow and varies little)
	ScaleHeartbeat time.Duration
	ScaleSettle    time.Duration
	ScaleRooms     int // rooms per agent (each joined: chat_room and room_participants)
	// ScaleRestart measures, for each size, a second bridge process started
	// once the first stopped: a restart, against the same NATS server and
	// platform.
	ScaleRestart bool
	// ScaleMaxRSS skips a size whose added RSS (bridge and NATS server),
	// projected from the previous size, would pass it: the machine is shared.
	ScaleMaxRSS int64 // bytes
	// PolyAIScaleSizes are the idle session counts of the scale_polyai
	// scenario (ScaleRuns, ScaleSettle apply too), PolyAIHeartbeat the
	// sessions' heartbeat interval there.
	PolyAIScaleSizes []int
	PolyAIHeartbeat  time.Duration

	// GapFillBacklog is the number of pending messages before the bridge
	// starts, spread over GapFillRooms rooms.
	GapFillBacklog int
	GapFillRooms   int

	// ChatAPIChats streamed chats per measurement of the chatapi
	// scenario (each of the baseline and the bridge), spread over
	// ChatAPIAgents agents (the rooms in parallel), each reply
	// ChatAPIFragments SSE text fragments.
	ChatAPIChats     int
	ChatAPIAgents    int
	ChatAPIFragments int
}

// FullPlan is the plan of a full run (about 5–6 minutes on 2 cores).
func FullPlan() Plan {
	return Plan{
		Mode: "full", Runs: 3,
		InboundEvents: 40000, InboundConns: 100,
		LatencyRate: 2000, LatencyDuration: 6 * time.Second,
		CommandsCount: 6000, CommandsRooms: 16,
		DispatchRate: 1000, DispatchDuration: 5 * time.Second, DispatchRooms: 50,
		ScaleSizes: []int{1000, 10000}, ScaleRuns: 2, ScaleHeartbeat: 10 * time.Second, ScaleSettle: 12 * time.Second, ScaleRooms: 1, ScaleMaxRSS: 4 << 30, ScaleRestart: true,
		PolyAIScaleSizes: []int{1000, 10000}, PolyAIHeartbeat: 10 * time.Second,
		GapFillBacklog: 10000, GapFillRooms: 1,
		ChatAPIChats: 320, ChatAPIAgents: 16, ChatAPIFragments: 200,
	}
}

// QuickPlan is the plan of a quick run (under a minute on 2 cores): one
// run, smaller sizes.
func QuickPlan() Plan {
	return Plan{
		Mode: "quick", Runs: 1,
		InboundEvents: 15000, InboundConns: 100,
		LatencyRate: 2000, LatencyDuration: 3 * time.Second,
		CommandsCount: 2000, CommandsRooms: 16,
		DispatchRate: 1000, DispatchDuration: 2 * time.Second, DispatchRooms: 50,
		ScaleSizes: []int{500}, ScaleHeartbeat: 2 * time.Second, ScaleSettle: 3 * time.Second, ScaleRooms: 1, ScaleMaxRSS: 4 << 30,
		PolyAIScaleSizes: []int{500}, PolyAIHeartbeat: 5 * time.Second,
		GapFillBacklog: 10000, GapFillRooms: 1,
		ChatAPIChats: 64, ChatAPIAgents: 16, ChatAPIFragments: 200,
	}
}

// Scenarios lists the scenario names in the order they run.
func Scenarios() []string {
	return []string{"inbound", "latency", "commands", "dispatch", "scale", "scale_polyai", "gapfill", "chatapi"}
}

// ParseOnly turns "a,b" into scenario names, checking each; "" means all.
func ParseOnly(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return Scenarios(), nil
	}
	var out []string
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !slices.Contains(Scenarios(), n) {
			return nil, fmt.Errorf("unknown scenario %q (known: %s)", n, strings.Join(Scenarios(), ", "))
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}
