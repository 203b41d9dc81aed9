package agentconnectemu_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/bridgeworks/bridge/emulator/agentconnectemu"
)

// Example logs in with the form the platform expects and creates a
// human_agent session; a client would then dial
// emu.SocketURL(sessionID) + "?token=" + token.
func Example() {
	emu := agentconnectemu.New(agentconnectemu.Options{Password: "secret"})
	defer emu.Close()
	base, err := emu.Start()
	if err != nil {
		panic(err)
	}
	form := url.Values{"username": {agentconnectemu.DefaultUser}, "password": {"secret"}}
	resp, err := http.PostForm(base+agentconnectemu.LoginPath, form)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("login:", resp.StatusCode)

	req, _ := http.NewRequest("POST", base+agentconnectemu.CreatePath,
		strings.NewReader(`{"session_type":"human_agent","agents":{"primary":{"provider":"groq"}}}`))
	req.Header.Set("Authorization", "Bearer "+emu.Token(agentconnectemu.DefaultUser))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	s := emu.Sessions()[0]
	fmt.Println("create:", resp.StatusCode, s.Type, len(s.AgentIDs))
	// Output:
	// login: 200
	// create: 200 human_agent 1
}
