package nriplugin

import "github.com/sockreap/sockreap/internal/lifecycle"

// Outcome and its actions are the lifecycle core's: the plugin decides
// nothing about a namespace that the hook would decide differently.
type (
	Outcome = lifecycle.Outcome
	Action  = lifecycle.Action
)

// Actions the plugin reports.
const (
	Drained        = lifecycle.Drained
	NothingToDrain = lifecycle.NothingToDrain
	SkippedShared  = lifecycle.SkippedShared
	OptedOut       = lifecycle.OptedOut
	Refused        = lifecycle.Refused
	BudgetExceeded = lifecycle.BudgetExceeded
	Failed         = lifecycle.Failed
)
