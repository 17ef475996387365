package reap

import (
	"context"
	"errors"

	"github.com/sockreap/sockreap/internal/netns"
)

// Drain empties the namespace ns of TCP and UDP sockets within the options'
// budget and reports the outcome. It does not check whether ns may be
// drained: callers apply netns.CheckTarget and the live-process check first.
func Drain(ctx context.Context, ns *netns.NS, opts Options) (*Report, error) {
	return nil, errors.New("not implemented")
}
