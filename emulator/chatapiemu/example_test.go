package chatapiemu_test

import (
	"fmt"

	"github.com/bridgeworks/bridge/emulator/chatapiemu"
)

// Example shows the usual set-up: start the emulator, add an agent with
// a scripted answer, plan a cut stream, and put a reminder in its inbox.
func Example() {
	emu := chatapiemu.New(chatapiemu.Options{})
	defer emu.Close()
	if _, err := emu.Start(); err != nil {
		panic(err)
	}
	// A client calls emu.BaseURL() + "/agents/<id>/chat/stream" with
	// "Authorization: Bearer <key>" (emu.APIKey() or agent.APIKey).
	agent := emu.AddAgent("Planner")
	emu.SetScript(agent.ID, chatapiemu.Script{Text: "Here is the plan.", Fragments: 4})
	emu.InjectStreamFault(agent.ID, chatapiemu.StreamFault{Kind: chatapiemu.StreamCut, After: 2})
	item, _ := emu.AddInboxItem(agent.ID, chatapiemu.InboxItem{Content: "Stand-up in 5 minutes", Type: "reminder"})

	fmt.Println(len(emu.History(agent.ID)), emu.ChatPosts(agent.ID), item.Read())
	// Output: 0 0 false
}
