package connector

// CommandNamer is implemented by platforms that know the names of the
// commands they take (an optional ability, found by type assertion). The
// bridge labels its command metrics with these names only and counts any
// other name a worker sends under the one label value "other", so what
// workers publish can never add metric series.
type CommandNamer interface {
	// CommandNames lists every command name the platform executes.
	CommandNames() []string
}
