package bridge

import (
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/band"
)

// Platforms returns the registry of every platform the bridge knows, keyed by
// the name used in config.
func Platforms() connector.Registry {
	return connector.Registry{
		"band":    band.Factory(false, band.Options{}),
		"thenvoi": band.Factory(true, band.Options{}),
	}
}
