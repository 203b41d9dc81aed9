// Package emuhttp is the HTTP serving lifecycle the platform emulators
// share: listen on a random 127.0.0.1 port or a fixed address, serve a
// handler in the background, report the base URL, and shut the
// listener down. It imports only the standard library, so an emulator
// using it still imports nothing of the bridge.
//
// An emulator keeps one [Server] for its built-in listener. Its own
// Close calls [Server.Shutdown] and then closes its upgraded sockets and
// waits for its goroutines: connections hijacked by a WebSocket upgrade
// are the emulator's to close, not this package's.
//
// Shutdown is graceful first: [http.Server.Shutdown] lets a request in
// flight finish, which matters for a WebSocket upgrade whose 101 is
// already written but whose connection is not yet hijacked (coder/
// websocket writes the response just before taking the connection
// over); [http.Server.Close] would cut it without a close frame. A
// handler still running after the grace period (2 s) is cut by Close.
package emuhttp
