package leaf

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/runner"
)

// InfiniBand asks the subnet, with a directed-route SMP query one hop out of
// each IB port, which switch the port is cabled to. It needs infiniband-diags
// and access to the umad device, so it is opt-in.
type InfiniBand struct {
	Runner runner.Runner
}

var _ Source = InfiniBand{}

func (InfiniBand) Name() v1alpha1.LeafSource { return v1alpha1.LeafSourceInfiniBand }

// SMPQueryArgs is the smpquery command line for one port: node info of the
// node one hop out of that port.
func SMPQueryArgs(device string, port int) []string {
	p := strconv.Itoa(port)
	return []string{"smpquery", "-C", device, "-P", p, "-D", "nodeinfo", "0," + p}
}

func (ib InfiniBand) Lookup(ctx context.Context, _ Node, nics []NIC) (map[string]Result, error) {
	res := map[string]Result{}
	var errs []error
	for _, n := range nics {
		if n.LinkLayer != v1alpha1.LinkLayerInfiniBand {
			continue
		}
		args := SMPQueryArgs(n.Device, n.Port)
		out, err := ib.Runner.Run(ctx, args[0], args[1:]...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		info, err := ParseNodeInfo(out)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", runner.CommandLine(args[0], args[1:]...), err))
			continue
		}
		if info.NodeType != "Switch" {
			errs = append(errs, fmt.Errorf("%s: neighbour of %s is a %s, not a switch", runner.CommandLine(args[0], args[1:]...), n.Name, info.NodeType))
			continue
		}
		res[n.Name] = Result{Leaf: info.GUID}
	}
	return res, errors.Join(errs...)
}

// NodeInfo is the part of an SMP NodeInfo the agent uses.
type NodeInfo struct {
	NodeType   string
	GUID       string
	SystemGUID string
	LocalPort  int
}

// ParseNodeInfo parses smpquery nodeinfo output: "Key:.....value" lines.
func ParseNodeInfo(data []byte) (NodeInfo, error) {
	var info NodeInfo
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(strings.TrimLeft(val, "."))
		switch key {
		case "NodeType":
			info.NodeType = val
		case "Guid":
			info.GUID = val
		case "SystemGuid":
			info.SystemGUID = val
		case "LocalPort":
			n, err := strconv.Atoi(val)
			if err != nil {
				return NodeInfo{}, fmt.Errorf("LocalPort %q is not a number", val)
			}
			info.LocalPort = n
		}
	}
	if info.GUID == "" || info.NodeType == "" {
		return NodeInfo{}, errors.New("output has no NodeType and Guid lines")
	}
	if _, err := NormalizeGUID(info.GUID); err != nil {
		return NodeInfo{}, fmt.Errorf("Guid: %w", err)
	}
	return info, nil
}
