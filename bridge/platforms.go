package bridge

import "github.com/bridgeworks/bridge/connector"

// Platforms returns the registry of every platform the bridge knows, keyed by
// the name used in config.
func Platforms() connector.Registry {
	return connector.Registry{}
}
