// Package config loads, overrides and validates the bridge's TOML
// configuration. Start with [Load]: it reads the file, rejects unknown keys,
// applies BRIDGE_* environment overrides (see [ApplyEnv] for the rule), fills
// defaults and runs [Config.Validate], so every error names the key at fault.
//
// Secrets never live in the file: keys ending in _env name an environment
// variable and keys ending in _file name a file; [Secret] resolves NATS's.
// A connection's platform keys stay an undecoded table
// ([Connection.Settings]): the platform decodes and checks them, and its
// *_env / *_file keys become the connector's secrets (see package connector).
//
// It is its own package, not part of bridge, so that `bridge check-config`
// and the tests can load a config without starting anything.
package config
