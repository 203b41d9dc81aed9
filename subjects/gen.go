package subjects

// The AsyncAPI document and JSON Schemas in docs/ are generated from this
// package's types; a test in internal/gen fails when they are stale.
//go:generate go run ./internal/gen -out ../docs
