// Package polyaiemu is an in-process emulator of the PolyAI Messaging
// API. Full documentation follows.
package polyaiemu
