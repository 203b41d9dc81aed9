// Package layers holds no code: its test checks that imports between the
// bridge's packages only point down the stack (layers_test.go lists the
// layers). Start there when a new package needs a place.
package layers
