package bandemu

import (
	"time"

	"github.com/bridgeworks/bridge/emulator/emuhttp"
)

// DialStats summarises the socket upgrade requests the emulator received
// (refused ones included): Total, the busiest one- and three-second
// windows, and the times of the first and the last.
type DialStats = emuhttp.ArrivalStats

// DialStats reports how many sockets were dialled and the busiest second.
func (s *Server) DialStats() DialStats { return s.dials.Stats() }

// DialStatsSince reports the socket upgrade requests received at or after
// t (a restart's, say).
func (s *Server) DialStatsSince(t time.Time) DialStats { return s.dials.StatsSince(t) }
