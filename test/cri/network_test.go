package cri

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/critest"
)

// hostNetwork: a pod in the host's network namespace. Nothing may be
// drained (a connection of the host's must survive) and nothing noisy
// logged.
func hostNetwork(t *testing.T, m *critest.Mode, d *critest.Daemon) {
	a, b := loopbackPair(t)
	p := d.RunPod(t, critest.PodSpec{Handler: m.Handler, PID: critest.NamespaceContainer, Network: critest.NamespaceNode})
	p.Start(t, "app", "/bin/sleep", "2147483647")
	p.Stop(t)
	p.Remove(t)
	if _, err := a.Write([]byte("x")); err != nil {
		t.Errorf("a loopback connection of the host's broke when the hostNetwork pod stopped: %v", err)
	}
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(b, make([]byte, 1)); err != nil {
		t.Errorf("a loopback connection of the host's broke when the hostNetwork pod stopped: %v", err)
	}
	if m.Check == nil {
		return
	}
	m.Check(t, d, p, false)
	for _, r := range d.HookRecords(t, append([]string{p.ID}, p.Containers...)...) {
		if r.Level == "INFO" {
			if r.Stage == "poststop" && r.Container != p.ID && !strings.Contains(r.Msg, "shares the host's network namespace") {
				t.Errorf("hostNetwork app container: poststop does not say it shares the host's namespace: %s", r.Line)
			}
			continue
		}
		t.Errorf("hostNetwork pod: hook logged %s at %s of %s: %s", r.Level, r.Stage, r.Container, r.Line)
	}
}

// loopbackPair returns both ends of a TCP connection on 127.0.0.1 in the
// test's (the host's) network namespace.
func loopbackPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

// The rig's pod network stays on the machine: the CNI bridge has no
// address in the host's namespace, the host has no route into the pods'
// subnet, and a pod reaches a peer on the bridge (and nothing else).
func TestPodNetworkStaysLocal(t *testing.T) {
	d := startDaemon(t, critest.Containerd16)
	p := d.RunPod(t, critest.PodSpec{PID: critest.NamespaceContainer})
	peer := d.NewPeer(t, peerPort)
	if out := run(t, "ip", "-o", "addr", "show", "dev", d.Bridge); strings.Contains(out, "inet ") {
		t.Errorf("the CNI bridge has an address in the host's namespace: %s", out)
	}
	// No route at all ("unreachable") is fine too.
	if out, _ := execCommand("ip", "-4", "route", "get", p.IP.String()); strings.Contains(out, d.Bridge) {
		t.Errorf("the host routes into the pods' subnet: %s", out)
	}
	routes := run(t, "nsenter", "--net="+p.Netns, "ip", "-4", "route")
	if strings.Contains(routes, "default") {
		t.Errorf("pods have a default route: %s", routes)
	}
	app := p.Start(t, "app", peer.OrphanCommand()...)
	peer.WaitStuck(t, p.Netns, 1)
	t.Logf("pod %s (app %s) reached the peer %s over %s; its routes: %s", p.ID, app, peer.Addr, d.Bridge, routes)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := execCommand(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}
