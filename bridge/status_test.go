package bridge

import (
	"reflect"
	"testing"
	"time"
)

// TestStatusEntryCarriesConnStatus: the board's entry holds every field of
// ConnStatus but the name and the platform wait (added by snapshot), and
// status copies each of them, so a field added to ConnStatus cannot be
// left out of /status.
func TestStatusEntryCarriesConnStatus(t *testing.T) {
	t.Parallel()
	var e statusEntry
	ev := reflect.ValueOf(&e).Elem()
	ct := reflect.TypeFor[ConnStatus]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		switch f.Name {
		case "Name", "WaitingUntil", "WaitingReason":
			continue
		}
		ef, ok := reflect.TypeFor[statusEntry]().FieldByName(f.Name)
		if !ok || ef.Type != f.Type {
			t.Fatalf("statusEntry lacks ConnStatus.%s (%s)", f.Name, f.Type)
		}
		v := ev.FieldByName(f.Name)
		switch v.Kind() {
		case reflect.String:
			v.SetString("x" + f.Name)
		case reflect.Uint64:
			v.SetUint(uint64(i + 1))
		case reflect.Map:
			v.Set(reflect.ValueOf(map[string]string{"k": f.Name}))
		case reflect.Struct: // time.Time
			v.Set(reflect.ValueOf(time.Unix(int64(i+1), 0).UTC()))
		default:
			t.Fatalf("ConnStatus.%s: kind %s not covered by this test", f.Name, v.Kind())
		}
	}
	got := reflect.ValueOf(e.status("conn"))
	if got.FieldByName("Name").String() != "conn" {
		t.Fatal("name not set")
	}
	for i := range ct.NumField() {
		f := ct.Field(i)
		switch f.Name {
		case "Name", "WaitingUntil", "WaitingReason":
			continue
		}
		if !reflect.DeepEqual(got.Field(i).Interface(), ev.FieldByName(f.Name).Interface()) {
			t.Fatalf("status() does not copy %s", f.Name)
		}
	}
}
