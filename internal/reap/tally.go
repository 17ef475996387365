package reap

import (
	"github.com/sockreap/sockreap/internal/sockdiag"
	"golang.org/x/sys/unix"
)

// tally counts sockets by protocol, state and owner kind in a fixed array:
// it is bumped once per dumped socket, where a map would cost a share of
// a large drain.
type tally [2][16][5]int32

// Owner kinds in tally order.
var tallyOwners = [5]string{OwnerProcess, OwnerOrphan, OwnerKernel, OwnerMini, OwnerKept}

// add counts s. Sockets with an inode are the processes' when live
// processes are inside the namespace (occupied), else the kernel's.
func (t *tally) add(s *sockdiag.Socket, held, occupied bool) {
	p := 0
	if s.Protocol == unix.IPPROTO_UDP {
		p = 1
	}
	o := 2 // kernel
	switch {
	case held:
		o = 4
	case s.Mini():
		o = 3
	case s.Inode == 0:
		o = 1
	case occupied:
		o = 0
	}
	t[p][s.State&15][o]++
}

func (t *tally) merge(o *tally) {
	for p := range t {
		for s := range t[p] {
			for k := range t[p][s] {
				t[p][s][k] += o[p][s][k]
			}
		}
	}
}

// groups lists the non-zero counts, sorted like Report.Left.
func (t *tally) groups() []Group {
	m := map[groupKey]int{}
	for p := range t {
		proto := "tcp"
		if p == 1 {
			proto = "udp"
		}
		for s := range t[p] {
			for k, n := range t[p][s] {
				if n > 0 {
					m[groupKey{proto, sockdiag.State(s).String(), tallyOwners[k]}] += int(n)
				}
			}
		}
	}
	return groupsOf(m)
}
