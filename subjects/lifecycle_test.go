package subjects

import "testing"

// Every lifecycle name is a valid, distinct subject token with a
// one-line description.
func TestLifecycles(t *testing.T) {
	t.Parallel()
	seen := map[Lifecycle]bool{}
	for _, l := range Lifecycles() {
		if seen[l.Name] {
			t.Errorf("%s listed twice", l.Name)
		}
		seen[l.Name] = true
		if EventName(string(l.Name)) != string(l.Name) {
			t.Errorf("%s is not a lower-case event name", l.Name)
		}
		if l.Description == "" || len(l.Description) > 200 {
			t.Errorf("%s: description %q is not one line", l.Name, l.Description)
		}
		if !IsLifecycle(string(l.Name)) {
			t.Errorf("IsLifecycle(%s) = false", l.Name)
		}
	}
	if IsLifecycle("no_such_lifecycle") {
		t.Error("IsLifecycle accepts a name that is not listed")
	}
}
