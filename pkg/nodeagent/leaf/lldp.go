package leaf

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/runner"
)

// LLDP asks lldpd which switch each RoCE NIC's netdev sees.
type LLDP struct {
	Runner runner.Runner
}

var _ Source = LLDP{}

func (LLDP) Name() v1alpha1.LeafSource { return v1alpha1.LeafSourceLLDP }

// LLDPCommand is the command LLDP runs.
var LLDPCommand = []string{"lldpcli", "-f", "json0", "show", "neighbors"}

func (l LLDP) Lookup(ctx context.Context, _ Node, nics []NIC) (map[string]Result, error) {
	var roce []NIC
	for _, n := range nics {
		if n.LinkLayer == v1alpha1.LinkLayerRoCE && n.NetDev != "" {
			roce = append(roce, n)
		}
	}
	if len(roce) == 0 {
		return nil, nil
	}
	out, err := l.Runner.Run(ctx, LLDPCommand[0], LLDPCommand[1:]...)
	if err != nil {
		return nil, err
	}
	neighbours, err := ParseLLDPNeighbors(out)
	if err != nil {
		return nil, err
	}
	res := map[string]Result{}
	for _, n := range roce {
		if ch, ok := neighbours[n.NetDev]; ok {
			res[n.Name] = Result{Leaf: ch.ID()}
		}
	}
	return res, nil
}

// Chassis is an LLDP neighbour's chassis.
type Chassis struct {
	// ChassisID is usually the switch's MAC address.
	ChassisID string
	// SysName is the switch's system name, when it sends one.
	SysName string
}

// ID names the switch: its system name when it sends one, its chassis id
// otherwise.
func (c Chassis) ID() string {
	if c.SysName != "" {
		return c.SysName
	}
	return c.ChassisID
}

// ParseLLDPNeighbors parses `lldpcli -f json0 show neighbors`, whose every
// value is wrapped in a list, into the neighbour chassis per interface.
func ParseLLDPNeighbors(data []byte) (map[string]Chassis, error) {
	type value struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	}
	var doc struct {
		LLDP []struct {
			Interface []struct {
				Name    string `json:"name"`
				Chassis []struct {
					ID   []value `json:"id"`
					Name []value `json:"name"`
				} `json:"chassis"`
			} `json:"interface"`
		} `json:"lldp"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing %s output: %w", runner.CommandLine(LLDPCommand[0], LLDPCommand[1:]...), err)
	}
	out := map[string]Chassis{}
	for _, l := range doc.LLDP {
		for _, iface := range l.Interface {
			if iface.Name == "" || len(iface.Chassis) == 0 {
				continue
			}
			var c Chassis
			ch := iface.Chassis[0]
			if len(ch.ID) > 0 {
				c.ChassisID = ch.ID[0].Value
			}
			if len(ch.Name) > 0 {
				c.SysName = ch.Name[0].Value
			}
			if c.ChassisID == "" && c.SysName == "" {
				continue
			}
			if _, dup := out[iface.Name]; !dup {
				out[iface.Name] = c
			}
		}
	}
	return out, nil
}
