module github.com/sockreap/sockreap

go 1.26.8

require (
	github.com/opencontainers/runtime-spec v1.3.0
	github.com/pelletier/go-toml/v2 v2.4.3
	github.com/vishvananda/netns v0.0.5
	golang.org/x/sys v0.50.0
)
