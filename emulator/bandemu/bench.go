package bandemu

// Hooks for load generators (cmd/bridge-bench). They only read state;
// nothing here changes how the emulator behaves.

// QueuedFrames returns how many frames wait to be written to the agent's
// live socket, 0 when it has none. A load generator pushing "as fast as
// the client reads" polls it to hold back before the queue reaches
// [Options.WriteQueueSize], which would close the socket as too slow.
func (s *Server) QueuedFrames(agentID string) int {
	s.mu.Lock()
	a := s.agents[agentID]
	var c *wsConn
	if a != nil {
		c = a.conn
	}
	s.mu.Unlock()
	if c == nil {
		return 0
	}
	c.qmu.Lock()
	defer c.qmu.Unlock()
	return len(c.queue)
}
