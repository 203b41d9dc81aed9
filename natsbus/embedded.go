package natsbus

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// EmbeddedOptions configure the in-process nats-server.
type EmbeddedOptions struct {
	// Listen is the client listener, "host:port"; "none" or "" listens on
	// nothing (in-process clients only). Port 0 or -1 picks a free port.
	Listen string
	// StoreDir is the JetStream file store directory (required).
	StoreDir string
	// ReadyTimeout bounds the wait for the server to accept clients, default 10s.
	ReadyTimeout time.Duration
	// ServerName names the server, default "bridge-embedded".
	ServerName string
	// MaxStore caps JetStream's file store in bytes. Default 0: nats-server's
	// own default, 75% of the disk space free at start (measured again when
	// JetStream restarts, see KeepJetStream).
	MaxStore int64
	// MaxPayload is the largest message a client may publish, in bytes;
	// default nats-server's 1 MiB. Tests set a small one to reach the limit
	// cheaply.
	MaxPayload int32
	// MaxConsumersPerStream is the server's consumer limit for a stream
	// that sets none; default nats-server's (1,000). Tests set a small one.
	MaxConsumersPerStream int
}

// Embedded is a running embedded nats-server. Its Shutdown stops the server,
// waits for it and releases the store directory.
type Embedded struct {
	*server.Server
	opts   EmbeddedOptions
	log    zerolog.Logger
	unlock func()
	once   sync.Once
	// writeFailed is set when the server reports a failed store write (the
	// disk full); KeepJetStream restarts JetStream to clear it.
	writeFailed *atomic.Bool
}

// Shutdown stops the server, waits until it has stopped and releases the
// store directory's lock; it is idempotent.
func (e *Embedded) Shutdown() {
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
	e.once.Do(e.unlock)
}

// StartEmbedded starts a nats-server with JetStream on, and waits until it
// accepts clients. Call Shutdown on the result to stop it. The server holds
// an exclusive lock on StoreDir (the file LOCK in it) until Shutdown: a
// second server on the same directory, in this process or another, fails to
// start with an error naming the directory and the holder's pid.
func StartEmbedded(o EmbeddedOptions, log zerolog.Logger) (_ *Embedded, err error) {
	if o.StoreDir == "" {
		return nil, fmt.Errorf("embedded nats: store dir is empty")
	}
	unlock, err := lockStoreDir(o.StoreDir)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	defer func() {
		if err != nil {
			unlock()
		}
	}()
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	if o.ServerName == "" {
		o.ServerName = "bridge-embedded"
	}
	opts := &server.Options{
		ServerName:        o.ServerName,
		JetStream:         true,
		StoreDir:          o.StoreDir,
		JetStreamMaxStore: o.MaxStore,
		NoSigs:            true,
		MaxPayload:        o.MaxPayload,
	}
	opts.JetStreamLimits.DefaultMaxConsumers = o.MaxConsumersPerStream
	if o.Listen == "" || o.Listen == "none" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen %q: %w", o.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen %q: port is not a number", o.Listen)
		}
		if p == 0 {
			p = -1 // nats-server's "random port"
		}
		opts.Host, opts.Port = host, p
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	writeFailed := &atomic.Bool{}
	srv.SetLoggerV2(serverLogger{log: log.With().Str("component", "nats-server").Logger(), writeFailed: writeFailed}, false, false, false)
	go srv.Start() // owned by srv: Shutdown stops it
	if !srv.ReadyForConnections(o.ReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats: not ready within %s (is %s in use?)", o.ReadyTimeout, o.Listen)
	}
	return &Embedded{Server: srv, opts: o, log: log, unlock: unlock, writeFailed: writeFailed}, nil
}

// ClientURL returns the URL local workers use to reach the embedded server,
// or "" when it listens on nothing.
func ClientURL(srv *Embedded) string {
	if srv.Addr() == nil {
		return ""
	}
	return srv.ClientURL()
}

// serverLogger adapts zerolog to nats-server's logger. It also notices the
// file store's "Critical write error" (nats-server v2.x filestore: the store
// refuses every later write until it is reloaded) and sets writeFailed.
type serverLogger struct {
	log         zerolog.Logger
	writeFailed *atomic.Bool
}

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l serverLogger) Errorf(format string, v ...any) {
	if strings.Contains(format, "Critical write error") {
		l.writeFailed.Store(true)
	}
	l.log.Error().Msgf(format, v...)
}
func (l serverLogger) Debugf(format string, v ...any) { l.log.Trace().Msgf(format, v...) }
func (l serverLogger) Tracef(format string, v ...any) { l.log.Trace().Msgf(format, v...) }
