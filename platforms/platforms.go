// Package platforms is the registry of every platform the bridge ships:
// the one place that names them. The program (cmd/bridge) hands it to
// bridge.New as Options.Registry; package bridge never imports it, so the
// core names no platform.
package platforms

import (
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/agentconnect"
	"github.com/bridgeworks/bridge/connector/band"
	"github.com/bridgeworks/bridge/connector/chatapi"
	"github.com/bridgeworks/bridge/connector/polyai"
)

// All returns the registry of every platform, keyed by the name used in
// config ([[connection]] platform).
func All() connector.Registry {
	return connector.Registry{
		"band":         band.Factory(false, band.Options{}),
		"thenvoi":      band.Factory(true, band.Options{}),
		"chatapi":      chatapi.Factory(),
		"agentconnect": agentconnect.Factory(),
		"polyai":       polyai.Factory(),
	}
}
