package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/natsbus"
)

// cmdStatus prints, from the NATS of a configured bridge, the running
// bridge processes and which of them holds each connection, since when,
// with the lease revision and the process the connection is assigned to.
func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("BRIDGE_CONFIG"), "config file (TOML); env BRIDGE_CONFIG")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *path == "" {
		return fmt.Errorf("%w: --config FILE is required", errUsage)
	}
	c, err := config.Load(*path, os.Environ())
	if err != nil {
		return err
	}
	o, err := bridge.NATSOptions(c.NATS, os.LookupEnv)
	if err != nil {
		return err
	}
	if o.URL == "" {
		return errors.New("nats: nats.url is empty and the embedded server listens on nothing; nothing to connect to")
	}
	o.Name = "bridge-status"
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nc, err := natsbus.Connect(cctx, o, zerolog.Nop())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	var conns []string
	for _, cc := range c.Connection {
		if cc.IsEnabled() {
			conns = append(conns, cc.Name)
		}
	}
	members, leases, err := bridge.ReadCluster(cctx, js, c.NATS.Prefix, conns)
	if err != nil {
		return err
	}
	return printCluster(stdout, members, leases, time.Now())
}

func printCluster(w io.Writer, members []bridge.ClusterMember, leases []bridge.ClusterLease, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PROCESS\tSINCE\tHOLDS\n")
	for _, m := range members {
		fmt.Fprintf(tw, "%s/%s\t%s\t%d\n", m.Owner, m.Instance, ago(m.Since, now), m.Holds)
	}
	fmt.Fprintf(tw, "\nCONNECTION\tHOLDER\tSINCE\tREVISION\tRENEWED\tASSIGNED\n")
	for _, l := range leases {
		holder := l.Holder
		if holder == "" {
			holder = "-"
		}
		rev := "-"
		if l.Revision > 0 {
			rev = fmt.Sprint(l.Revision)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", l.Connection, holder, ago(l.Since, now), rev, ago(l.Renewed, now), orDash(l.Assigned))
	}
	return tw.Flush()
}

// ago is t in UTC with how long ago it was, "-" when zero.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), now.Sub(t).Round(time.Second))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
