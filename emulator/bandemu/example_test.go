package bandemu_test

import (
	"fmt"

	"github.com/bridgeworks/bridge/emulator/bandemu"
)

// Example shows the usual test set-up: start the emulator, create a
// user and a room, post a message that mentions the agent, and look at
// what the agent still has to process.
func Example() {
	emu := bandemu.New(bandemu.Options{AgentName: "Bridge Bot"})
	defer emu.Close()
	if _, err := emu.Start(); err != nil {
		panic(err)
	}
	// A client would now dial emu.SocketURL() with
	// ?vsn=2.0.0&api_key=<emu.APIKey()>&agent_id=<emu.AgentID()>
	// and call the REST API at emu.URL() with X-API-Key.

	dana := emu.AddUser("Dana Levi")
	room := emu.AddRoom("Q3 planning", dana.ID)
	msg := emu.PostUserMessage(room.ID, dana.ID, "@Bridge Bot summarise this thread")

	status, attempts := emu.Status(msg.ID)
	fmt.Println(len(emu.Pending(room.ID)), status, len(attempts))
	// Output: 1 pending 0
}
