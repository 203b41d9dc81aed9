package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/config"
)

// cmdDemo runs the bridge on embedded defaults and says where workers connect.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	duration := fs.Duration("duration", 10*time.Second, "how long to run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bridge-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c, err := config.Parse(nil, nil)
	if err != nil {
		return err
	}
	c.NATS.Embedded.StoreDir = dir
	c.NATS.Embedded.Listen = "127.0.0.1:0"
	c.HTTP.Listen = "127.0.0.1:0"
	log := newLogger(config.Log{Level: "warn", Format: "console"}, stderr)
	b, err := bridge.New(c, bridge.Options{Log: log, Registry: bridge.Platforms(), OnReady: func(i bridge.Info) {
		fmt.Fprintf(stdout, "bridge running on embedded NATS\n  workers connect to: %s\n  health and metrics: http://%s/status\n", i.NATSClientURL, i.HTTPAddr)
	}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	return b.Run(ctx)
}
