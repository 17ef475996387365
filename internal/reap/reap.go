// Package reap drains a network namespace: it dumps every inet socket in it
// and destroys them with SOCK_DESTROY, looking again until a pass finds
// nothing left to do or the deadline passes. It decides per socket what is
// safe on the running kernel (see Probe) and reports what it found, what it
// destroyed and what is left.
package reap

import (
	"time"
)

// DefaultTimeout is the drain budget when Options.Timeout is zero.
const DefaultTimeout = 2 * time.Second

// OrphanPolicy says what to do with orphaned TCP sockets.
type OrphanPolicy string

const (
	// OrphansAuto destroys orphans only when the probe found the kernel
	// fixed ("tcp: Fix forever orphan socket caused by tcp_abort", 6.11);
	// otherwise it shortens their life through the namespace's sysctls.
	OrphansAuto OrphanPolicy = "auto"
	// OrphansDestroy destroys orphans whatever the kernel.
	OrphansDestroy OrphanPolicy = "destroy"
	// OrphansSpare never destroys orphans; it only shortens their life.
	OrphansSpare OrphanPolicy = "spare"
)

// Options tune a drain. The zero value is the default drain.
type Options struct {
	Timeout  time.Duration // overall budget; 0 means DefaultTimeout
	DryRun   bool          // dump and classify, destroy nothing
	TCP, UDP *bool         // protocols to drain; nil means yes
	Orphans  OrphanPolicy  // "" means OrphansAuto
	Workers  int           // parallel destroyers; 0 means DefaultWorkers
	Caps     *Capabilities // kernel capabilities; nil means Probe (cached per process)
	// Keep, when set, names the sockets (by inode) the drain must leave
	// alone: those a process outside the namespace holds (package inuse
	// finds them). They are reported as Held, owner OwnerKept. Set by a
	// holder scan, it also stands for that scan's finding that the other
	// sockets with an inode had no holder: what is left is not looked up
	// in /proc again.
	Keep func(inode uint64) bool
	// Occupied says live processes run in the namespace (a forced
	// drain). It only labels Report.FoundBy and DestroyedBy: sockets
	// with an inode count as the processes' then, else as the kernel's.
	Occupied bool
}
