package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bridgeworks/bridge/emulator/bandemu"
)

// cmdEmulate runs a platform emulator alone, for trying the bridge (or a
// worker) without a platform account.
func cmdEmulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	platforms := "band, chatapi, polyai, agentconnect"
	if len(args) == 0 {
		return fmt.Errorf("%w: emulate takes a platform: %s", errUsage, platforms)
	}
	switch args[0] {
	case "band":
	case "chatapi":
		return cmdEmulateChatAPI(ctx, args[1:], stdout, stderr)
	case "polyai":
		return cmdEmulatePolyAI(ctx, args[1:], stdout, stderr)
	case "agentconnect":
		return cmdEmulateAgentConnect(ctx, args[1:], stdout, stderr)
	default:
		return fmt.Errorf("%w: emulate: unknown platform %q; one of %s", errUsage, args[0], platforms)
	}
	fs := flag.NewFlagSet("emulate band", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:4000", "address to serve the emulator on")
	rooms := fs.Int("rooms", 1, "rooms to create, each with one user")
	control := fs.String("control", "127.0.0.1:4001", `address of the control API that plays the user ("none" to disable)`)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	emu := bandemu.New(bandemu.Options{})
	defer emu.Close()
	user := emu.AddUser("Dana Levi")
	for i := range *rooms {
		emu.AddRoom(fmt.Sprintf("Room %d", i+1), user.ID)
	}
	base := "http://" + *listen
	var ctl net.Listener
	if *control != "none" {
		var err error
		if ctl, err = net.Listen("tcp", *control); err != nil {
			return fmt.Errorf("control: %w", err)
		}
		defer ctl.Close()
	}
	fmt.Fprintf(stdout, `Band emulator on %s
  agent_id = %q
  api key  = %s   (export BAND_API_KEY=%s)
  rooms    = %d, user %s (%s)

Point a connection at it:
  [[connection]]
  name = "emu"
  platform = "band"
  [connection.settings]
  base_url = %q
  agent_id = %q
  api_key_env = "BAND_API_KEY"
`, base, emu.AgentID(), emu.APIKey(), emu.APIKey(), *rooms, user.Name, user.ID, base, emu.AgentID())
	g, gctx := errgroup.WithContext(ctx)
	if ctl != nil {
		c := "http://" + ctl.Addr().String()
		fmt.Fprintf(stdout, `
Play the user through the control API on %s:
  curl -s %s/rooms
  curl -s -XPOST %s/rooms/<room id>/messages -d '{"content": "hello agent"}'
  curl -s %s/rooms/<room id>/messages
`, c, c, c, c)
		srv := &http.Server{Handler: (&emulatorControl{emu: emu, user: user}).handler(), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			if err := srv.Serve(ctl); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("control: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			return srv.Close()
		})
	}
	g.Go(func() error {
		err := emu.ListenAndServe(gctx, *listen)
		if errors.Is(err, http.ErrServerClosed) || errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	})
	return g.Wait()
}
