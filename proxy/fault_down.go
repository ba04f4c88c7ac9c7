package proxy

import (
	"fmt"

	"github.com/ssestress/ssestress/internal/session"
)

// downKind is the fault kind down.
var downKind = &kind{
	summary: "refuse or reset connections as they open",
	keys: []keyDoc{{"action", "rst (default on hop client), fin, or refuse (default on hop upstream; " +
		"on hop client the listener closes while the fault is installed)"}},
	build: buildDown,
}

type down struct{ action string }

func buildDown(fs FaultSpec, scale float64) (behaviour, error) {
	def := ActionRST
	if fs.Hop == session.HopUpstream {
		def = ActionRefuse
	}
	action, err := paramAction(fs, def, ActionRST, ActionFIN, ActionRefuse)
	if err != nil {
		return nil, err
	}
	if action == ActionRefuse && fs.Hop == session.HopClient && (fs.Toxicity != 1 || fs.Match != "" || fs.After != 0) {
		return nil, fmt.Errorf("down:action=refuse on hop client closes the whole listener: toxicity, match and after do not apply")
	}
	return down{action}, nil
}

func (d down) attach(a *attachment) any { return nil }
func (d down) downAction() string       { return d.action }
