package bridge

import (
	"fmt"

	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/natsbus"
)

// NATSOptions are the options to reach the NATS server of n, secrets
// resolved through lookupEnv (os.LookupEnv) or their files. With n.URL
// empty they point at the embedded server's client listener, for tools
// that talk to a running bridge's embedded server.
func NATSOptions(n config.NATS, lookupEnv func(string) (string, bool)) (natsbus.Options, error) {
	o := natsbus.Options{
		URL: n.URL, Name: n.Name, User: n.User, NKeySeedFile: n.NKeySeedFile, CredsFile: n.CredsFile,
		TLSCAFile: n.TLSCAFile, TLSCertFile: n.TLSCertFile, TLSKeyFile: n.TLSKeyFile,
	}
	if o.URL == "" && n.Embedded.Listen != "none" {
		o.URL = "nats://" + n.Embedded.Listen
	}
	var err error
	if o.Password, err = config.Secret("nats.password", n.PasswordEnv, n.PasswordFile, lookupEnv); err != nil {
		return o, fmt.Errorf("config: %w", err)
	}
	if o.Token, err = config.Secret("nats.token", n.TokenEnv, n.TokenFile, lookupEnv); err != nil {
		return o, fmt.Errorf("config: %w", err)
	}
	return o, nil
}
