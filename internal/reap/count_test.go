package reap

import (
	"testing"

	"github.com/sockreap/sockreap/internal/nettest"
)

// A count whose dump fails says so: it must not pass for "nothing left".
func TestCountReportsDumpError(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	d := &drainer{ns: x.NS, tables: tables(Options{}), caps: &Capabilities{Destroy: true, TCP: true, UDP: true}, rep: &Report{}}
	c, err := d.open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.count(c); err != nil {
		t.Fatalf("count on a working socket: %v", err)
	}
	c.Close() // every dump on it now fails
	if p, err := d.count(c); err == nil {
		t.Errorf("count on a closed socket: no error, %d left", p.kept.total)
	}
}
