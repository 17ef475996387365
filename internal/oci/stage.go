package oci

// Stage is an OCI hook stage, spelled as in config.json's "hooks" object.
type Stage string

// The OCI hook stages. createRuntime pins the namespace while the
// container's init process is alive; poststop drains it after every
// process is gone. prestart is the deprecated name runtimes give
// createRuntime.
const (
	StagePrestart        Stage = "prestart"
	StageCreateRuntime   Stage = "createRuntime"
	StageCreateContainer Stage = "createContainer"
	StageStartContainer  Stage = "startContainer"
	StagePoststart       Stage = "poststart"
	StagePoststop        Stage = "poststop"
)

// Stages are the stages sockreap-hook accepts, in the order a container
// meets them.
var Stages = []Stage{StagePrestart, StageCreateRuntime, StageCreateContainer, StageStartContainer, StagePoststart, StagePoststop}

// HookStages are the stages sockreap installs itself at.
var HookStages = []Stage{StageCreateRuntime, StagePoststop}

// DefaultHookTimeout is the OCI hook timeout, in seconds, that every
// installer writes (configure, the shim, hooks.d). The hook's own budget
// (2 s by default) is shorter; this is the runtime's backstop.
const DefaultHookTimeout = 10
