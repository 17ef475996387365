// Package sockdiag speaks the kernel's sock_diag netlink protocol for inet
// sockets: a streaming dump of TCP and UDP sockets and SOCK_DESTROY by exact
// identity (4-tuple, interface and cookie).
//
// It is written by hand over golang.org/x/sys/unix because no library does
// what the drain needs: x/sys has the constants but not the inet_diag
// structures, and vishvananda/netlink's socket diag collects whole dumps into
// memory and destroys one socket per round trip. Here a dump is delivered
// one socket at a time from a fixed buffer (constant memory whatever the
// count) and many destroy requests travel in one sendmsg, each answer matched
// to its request by sequence number.
//
// A Conn acts on the network namespace it was created in; see package netns
// for creating one inside another namespace.
package sockdiag
