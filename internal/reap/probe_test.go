package reap

import (
	"os"
	"testing"
)

func TestProbe(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a scratch network namespace")
	}
	caps, err := Probe()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", caps)
	if !caps.Destroy {
		t.Skip("kernel without CONFIG_INET_DIAG_DESTROY")
	}
	if !caps.TCP || !caps.UDP || !caps.Listen {
		t.Errorf("destroy works but not for every kind: %+v", caps)
	}
}
