// Command bridge runs the gateway between AI-agent chat platforms and NATS.
//
//	bridge [run] --config FILE     run the bridge (the default subcommand)
//	bridge check-config --config FILE
//	bridge demo                    the whole flow on embedded defaults
//	bridge emulate band            run a platform emulator alone
//	bridge version
//
// main is the only place that exits; everything else returns errors.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks a command-line mistake (exit code 2).
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = cmdRun(ctx, args, stderr)
	case "check-config":
		err = cmdCheckConfig(args, stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, args, stdout, stderr)
	case "emulate":
		err = cmdEmulate(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "bridge: unknown command %q\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "bridge %s: %v\n", cmd, err)
		return 2
	default:
		fmt.Fprintf(stderr, "bridge %s: %v\n", cmd, err)
		return 1
	}
}

const usage = `usage: bridge <command> [flags]

commands:
  run --config FILE          run the bridge (default command)
  check-config --config FILE load and validate a config, then exit
  demo                       run the whole flow on embedded defaults (see --help)
  emulate band               run the Band platform emulator alone
  version                    print the version
`

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += "+" + s.Value[:12]
			}
		}
		return fmt.Sprintf("bridge %s (%s)", v, bi.GoVersion)
	}
	return "bridge " + v
}

type logFlags struct{ level, format string }

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "", "log level: trace, debug, info, warn, error (overrides log.level)")
	fs.StringVar(&l.format, "log-format", "", "log format: json or console (overrides log.format)")
}

func (l *logFlags) apply(c *config.Config) error {
	if l.level != "" {
		c.Log.Level = l.level
	}
	if l.format != "" {
		c.Log.Format = l.format
	}
	return c.Validate()
}

func newLogger(c config.Log, w io.Writer) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(c.Level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	w = zerolog.SyncWriter(w) // goroutines log concurrently; w may be any writer
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

func loadConfig(fs *flag.FlagSet, args []string, path *string, lf *logFlags) (*config.Config, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *path == "" {
		return nil, fmt.Errorf("%w: --config FILE is required", errUsage)
	}
	c, err := config.Load(*path, os.Environ())
	if err != nil {
		return nil, err
	}
	if lf != nil {
		if err := lf.apply(c); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	return c, nil
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("BRIDGE_CONFIG"), "config file (TOML); env BRIDGE_CONFIG")
	var lf logFlags
	lf.register(fs)
	c, err := loadConfig(fs, args, path, &lf)
	if err != nil {
		return err
	}
	log := newLogger(c.Log, stderr)
	b, err := bridge.New(c, bridge.Options{Log: log, Registry: bridge.Platforms()})
	if err != nil {
		return err
	}
	return b.Run(ctx)
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("BRIDGE_CONFIG"), "config file (TOML); env BRIDGE_CONFIG")
	c, err := loadConfig(fs, args, path, nil)
	if err != nil {
		return err
	}
	if _, err := bridge.New(c, bridge.Options{Log: zerolog.Nop(), Registry: bridge.Platforms()}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%d connections, %d dispatch rules)\n", *path, len(c.Connection), len(c.Dispatch))
	return nil
}
