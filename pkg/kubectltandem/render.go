package kubectltandem

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tandem-sched/tandem/pkg/bench"
)

// Output formats.
const (
	OutputTable = "table"
	OutputJSON  = "json"
	OutputSVG   = "svg"
	OutputHTML  = "html"
)

// Outputs are the formats --output takes.
var Outputs = []string{OutputTable, OutputJSON, OutputSVG, OutputHTML}

// NodesTable writes one line per node.
func NodesTable(w io.Writer, v *View) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"NODE"}
	for _, l := range v.Levels {
		head = append(head, strings.ToUpper(l))
	}
	head = append(head, "FREE/GPUS", "FREE PER ISLAND", "GPUDIRECT", "HEARTBEAT")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, n := range v.Nodes {
		row := []string{n.Name}
		for _, d := range n.Domains {
			row = append(row, orDash(d))
		}
		switch {
		case !n.Reported:
			row = append(row, "-", "no NodeTopology", "-", "-")
		case n.Error != "":
			row = append(row, "-", "malformed NodeTopology", gpuDirect(n), heartbeat(n))
		default:
			row = append(row, fmt.Sprintf("%d/%d", n.FreeGPUs, n.GPUs), islands(n), gpuDirect(n), heartbeat(n))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// PairsTable writes one line per pair.
func PairsTable(w io.Writer, v *View) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tGROUP\tUNIT\tPREFILL\tPREFILL NODE\tDECODE\tDECODE NODE\tPATH\tKV TRANSFER")
	for _, g := range v.Groups {
		if len(g.Pairs) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t%s\t-\n", g.Namespace, g.Name, groupState(g))
			continue
		}
		for _, p := range g.Pairs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Namespace, g.Name, orDash(p.Unit),
				orDash(p.Prefill), orDash(p.PrefillNode), p.Decode, p.DecodeNode, p.Class, transfer(p))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, g := range v.Groups {
		if g.Pending > 0 {
			fmt.Fprintf(w, "group %s/%s: %d of %d pods pending\n", g.Namespace, g.Name, g.Pending, g.Prefills+g.Decodes)
		}
	}
	return nil
}

// JSON writes the view.
func JSON(w io.Writer, v *View) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func groupState(g Group) string {
	switch {
	case g.Decodes == 0:
		return "no decode"
	case g.Pending == g.Prefills+g.Decodes:
		return "pending"
	}
	return "no decode bound"
}

func transfer(p Pair) string {
	if p.Transfer < 0 {
		return "-"
	}
	return bench.Millis(p.Transfer)
}

func islands(n Node) string {
	if len(n.Islands) == 0 {
		return "-"
	}
	parts := make([]string, len(n.Islands))
	for i, is := range n.Islands {
		parts[i] = fmt.Sprintf("%d/%d", is.Free, is.GPUs)
	}
	return strings.Join(parts, " ")
}

func gpuDirect(n Node) string {
	if n.GPUDirectReady {
		return "Ready"
	}
	if n.GPUDirectReason == "" {
		return "NotReady"
	}
	return "NotReady (" + n.GPUDirectReason + ")"
}

func heartbeat(n Node) string {
	if n.Heartbeat == nil {
		return "never"
	}
	return shortDuration(n.HeartbeatAge) + " ago"
}

func shortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours())/24)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
