package subjects

// The AsyncAPI document and JSON Schemas in docs/, and the tables between
// gen markers in docs/contract.md, docs/workers.md and README.md, are
// generated from this package; a test in internal/gen fails when they are
// stale.
//go:generate go run ./internal/gen -root ..
