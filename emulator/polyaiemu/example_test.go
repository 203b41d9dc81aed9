package polyaiemu_test

import (
	"fmt"

	"github.com/bridgeworks/bridge/emulator/polyaiemu"
)

// Example shows the usual test set-up: start the emulator, create a
// session without REST, and look at what it holds.
func Example() {
	emu := polyaiemu.New(polyaiemu.Options{})
	defer emu.Close()
	if _, err := emu.Start(); err != nil {
		panic(err)
	}
	// A client would POST emu.URL()+"/api/v1/access-token" with
	// X-Token: emu.ConnectorToken() and X-Host: emu.Host(), create a
	// session, then dial emu.SocketURL()+"?session_id=…&access_token=…".
	sess, err := emu.CreateSession(polyaiemu.SessionOptions{Streaming: true})
	if err != nil {
		panic(err)
	}
	h := emu.History(sess.ID)
	fmt.Println(len(h), h[0].Type, h[0].Sequence, sess.Agent)
	// Output: 1 EVENT_TYPE_SESSION_START 1 none
}
