package band

// CommandNames lists the commands Band executes ([Commands]): the only
// command names the bridge uses as metric labels.
func (c *Connector) CommandNames() []string { return Commands() }
