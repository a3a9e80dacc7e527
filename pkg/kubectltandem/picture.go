package kubectltandem

import (
	"cmp"
	"fmt"
	"html"
	"io"
	"slices"
	"strings"

	"github.com/tandem-sched/tandem/pkg/bench"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// Picture geometry, in SVG user units.
const (
	margin    = 20
	legendH   = 34
	rowH      = 40
	domainH   = 30
	nodeW     = 124
	nodeH     = 58
	nodeGap   = 14
	arcMin    = 24
	fontStack = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""
)

// classColours are by a class's rank in bench.PathClasses, best first:
// NVLink domain, leaf, spine, zone for the default levels, then host-bounce
// and none.
var classColours = []string{"#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#e377c2"}

const (
	hostBounceColour = "#d62728"
	noneColour       = "#7f7f7f"
	unpairedColour   = "#000000"
)

func colourOf(v *View, c topology.PathClass) string {
	switch c {
	case topology.PathHostBounce:
		return hostBounceColour
	case topology.PathNone:
		return noneColour
	case bench.PathClassUnpaired:
		return unpairedColour
	}
	for i := len(v.Levels) - 1; i >= 0; i-- {
		if v.Levels[i] == string(c) {
			return classColours[(len(v.Levels)-1-i)%len(classColours)]
		}
	}
	return noneColour
}

// legendClasses are the classes the legend lists, best first.
func legendClasses(v *View) []topology.PathClass {
	var out []topology.PathClass
	for i := len(v.Levels) - 1; i >= 0; i-- {
		out = append(out, topology.PathClass(v.Levels[i]))
	}
	return append(out, topology.PathHostBounce, topology.PathNone, bench.PathClassUnpaired)
}

// treeOrder sorts nodes by their domains, coarse to fine, then by name, so
// that every domain's nodes sit side by side.
func treeOrder(nodes []Node) []Node {
	out := slices.Clone(nodes)
	slices.SortStableFunc(out, func(a, b Node) int {
		return cmp.Or(slices.Compare(a.Domains, b.Domains), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// SVG draws the fabric tree — one row per level, coarse to fine, each
// domain a box over its nodes, the nodes at the bottom labelled with their
// free GPUs — and every pair as an arc between its prefill's and its
// decode's node, coloured by path class, under a legend.
//
// A global level (an NVLink domain whose trays hang off two leaves) is drawn
// under each coarser domain it spans.
func SVG(w io.Writer, v *View) error {
	var b strings.Builder
	writeSVG(&b, v)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSVG(b *strings.Builder, v *View) {
	nodes := treeOrder(v.Nodes)
	x := map[string]int{}
	for i, n := range nodes {
		x[n.Name] = margin + i*(nodeW+nodeGap)
	}
	width := max(margin*2+len(nodes)*(nodeW+nodeGap)-nodeGap, 640)
	treeTop := margin + legendH
	nodeTop := treeTop + len(v.Levels)*rowH
	nodeBottom := nodeTop + nodeH

	type arc struct {
		group    Group
		pair     Pair
		x1, x2   int
		depth    int
		sameNode bool
	}
	slots := map[string]int{}
	used := map[string]int{}
	for _, g := range v.Groups {
		for _, p := range g.Pairs {
			slots[p.DecodeNode]++
			if p.PrefillNode != "" && p.PrefillNode != p.DecodeNode {
				slots[p.PrefillNode]++
			}
		}
	}
	endpoint := func(node string) int {
		n := max(slots[node], 1)
		k := used[node]
		used[node]++
		return x[node] + (k+1)*nodeW/(n+1)
	}
	var arcs []arc
	deepest := 0
	for _, g := range v.Groups {
		for _, p := range g.Pairs {
			if _, ok := x[p.DecodeNode]; !ok {
				continue
			}
			a := arc{group: g, pair: p}
			switch _, ok := x[p.PrefillNode]; {
			case p.PrefillNode == "" || !ok:
				a.x1 = endpoint(p.DecodeNode)
				a.x2, a.depth = a.x1, arcMin/2
			case p.PrefillNode == p.DecodeNode:
				a.x1 = endpoint(p.DecodeNode)
				a.x2, a.depth, a.sameNode = a.x1, arcMin, true
			default:
				a.x1, a.x2 = endpoint(p.PrefillNode), endpoint(p.DecodeNode)
				a.depth = max(arcMin, abs(a.x2-a.x1)/3)
			}
			deepest = max(deepest, a.depth)
			arcs = append(arcs, a)
		}
	}
	height := nodeBottom + deepest + margin*2

	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" id="fabric" width="%d" height="%d" viewBox="0 0 %d %d" %s font-size="11">`+"\n", width, height, width, height, fontStack)
	fmt.Fprintf(b, "<title>tandem: fabric, nodes and prefill→decode pairs</title>\n")
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)

	// Legend.
	fmt.Fprintf(b, `<g id="legend" transform="translate(%d,%d)">`+"\n", margin, margin)
	lx := 0
	for _, c := range legendClasses(v) {
		dash := ""
		if c == bench.PathClassUnpaired {
			dash = ` stroke-dasharray="3,3"`
		}
		fmt.Fprintf(b, `<g class="legend-entry" data-class="%s"><line x1="%d" y1="6" x2="%d" y2="6" stroke="%s" stroke-width="3"%s/><text x="%d" y="10">%s</text></g>`+"\n",
			esc(string(c)), lx, lx+24, colourOf(v, c), dash, lx+30, esc(string(c)))
		lx += 40 + 7*len(c)
	}
	fmt.Fprintln(b, "</g>")

	// Domains, one row per level.
	fmt.Fprintln(b, `<g id="domains">`)
	for level, name := range v.Levels {
		y := treeTop + level*rowH
		for i := 0; i < len(nodes); {
			j := i + 1
			for j < len(nodes) && slices.Equal(nodes[j].Domains[:level+1], nodes[i].Domains[:level+1]) {
				j++
			}
			value := nodes[i].Domains[level]
			label := name + " " + value
			fill, stroke := "#eef3f8", "#8aa4bf"
			if value == "" {
				label, fill, stroke = "no "+name, "#f6f6f6", "#cccccc"
			}
			x0, x1 := x[nodes[i].Name]-4, x[nodes[j-1].Name]+nodeW+4
			fits := (x1 - x0 - 12) / 6
			shown := label
			if len([]rune(label)) > fits && value != "" {
				// The row says which level it is; a narrow box shows the value.
				shown = value
			}
			fmt.Fprintf(b, `<g class="domain" data-level="%s" data-domain="%s"><title>%s</title><rect x="%d" y="%d" width="%d" height="%d" rx="4" fill="%s" stroke="%s"/><text x="%d" y="%d">%s</text></g>`+"\n",
				esc(name), esc(value), esc(label), x0, y, x1-x0, domainH, fill, stroke, x0+6, y+19, esc(clip(shown, fits)))
			i = j
		}
	}
	fmt.Fprintln(b, "</g>")

	// Nodes.
	fmt.Fprintln(b, `<g id="nodes">`)
	for _, n := range nodes {
		nx := x[n.Name]
		fill, stroke, free := "#ffffff", "#333333", fmt.Sprintf("free %d/%d GPUs", n.FreeGPUs, n.GPUs)
		switch {
		case !n.Reported:
			fill, stroke, free = "#f6f6f6", "#999999", "no NodeTopology"
		case n.Error != "":
			fill, stroke, free = "#fde8e8", hostBounceColour, "malformed report"
		}
		detail := islands(n)
		if n.Reported && n.Error == "" && !n.GPUDirectReady {
			detail += " · no GPUDirect"
		}
		fmt.Fprintf(b, `<g class="node" id="node-%s" data-node="%s" data-free="%d" data-gpus="%d">`, esc(n.Name), esc(n.Name), n.FreeGPUs, n.GPUs)
		fmt.Fprintf(b, `<title>%s</title>`, esc(nodeTitle(v, n)))
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" rx="3" fill="%s" stroke="%s"/>`, nx, nodeTop, nodeW, nodeH, fill, stroke)
		fmt.Fprintf(b, `<text x="%d" y="%d" font-weight="bold">%s</text>`, nx+6, nodeTop+16, esc(clip(n.Name, 19)))
		fmt.Fprintf(b, `<text class="free" x="%d" y="%d">%s</text>`, nx+6, nodeTop+32, esc(free))
		fmt.Fprintf(b, `<text x="%d" y="%d" fill="#555555">%s</text>`, nx+6, nodeTop+48, esc(clip(detail, 19)))
		fmt.Fprintln(b, "</g>")
	}
	fmt.Fprintln(b, "</g>")

	// Pairs.
	fmt.Fprintln(b, `<g id="pairs" fill="none">`)
	for _, a := range arcs {
		p := a.pair
		colour := colourOf(v, p.Class)
		var d, dash string
		switch {
		case p.PrefillNode == "":
			d = fmt.Sprintf("M %d %d v %d", a.x1, nodeBottom, a.depth)
			dash = ` stroke-dasharray="3,3"`
		case a.sameNode:
			d = fmt.Sprintf("M %d %d c -14 %d, 14 %d, 0 0", a.x1, nodeBottom, a.depth*2, a.depth*2)
		default:
			d = fmt.Sprintf("M %d %d C %d %d, %d %d, %d %d", a.x1, nodeBottom, a.x1, nodeBottom+a.depth*4/3, a.x2, nodeBottom+a.depth*4/3, a.x2, nodeBottom)
		}
		fmt.Fprintf(b, `<path class="pair" data-namespace="%s" data-group="%s" data-prefill="%s" data-decode="%s" data-class="%s" d="%s" stroke="%s" stroke-width="2.5" stroke-opacity="0.85"%s><title>%s</title></path>`+"\n",
			esc(a.group.Namespace), esc(a.group.Name), esc(p.Prefill), esc(p.Decode), esc(string(p.Class)), d, colour, dash, esc(pairTitle(a.group, p)))
	}
	fmt.Fprintln(b, "</g>")
	fmt.Fprintln(b, "</svg>")
}

func nodeTitle(v *View, n Node) string {
	var parts []string
	for i, l := range v.Levels {
		parts = append(parts, l+"="+orDash(n.Domains[i]))
	}
	s := n.Name + " (" + strings.Join(parts, ", ") + ")"
	switch {
	case !n.Reported:
		return s + ": no NodeTopology"
	case n.Error != "":
		return s + ": " + n.Error
	}
	return fmt.Sprintf("%s: %d of %d GPUs free, islands %s; GPUDirect %s; heartbeat %s", s, n.FreeGPUs, n.GPUs, islands(n), gpuDirect(n), heartbeat(n))
}

func pairTitle(g Group, p Pair) string {
	unit := ""
	if p.Unit != "" {
		unit = " unit " + p.Unit
	}
	if p.Prefill == "" {
		return fmt.Sprintf("%s/%s%s: decode %s on %s has no bound prefill", g.Namespace, g.Name, unit, p.Decode, p.DecodeNode)
	}
	return fmt.Sprintf("%s/%s%s: %s (%s) → %s (%s): %s, %s", g.Namespace, g.Name, unit, p.Prefill, p.PrefillNode, p.Decode, p.DecodeNode, p.Class, transfer(p))
}

// HTML writes a self-contained page: the picture inline, then the nodes
// and the pairs as tables. It loads nothing.
func HTML(w io.Writer, v *View) error {
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>kubectl tandem</title>\n<style>\n")
	b.WriteString("body{font-family:\"DejaVu Sans\",Helvetica,Arial,sans-serif;margin:16px;color:#222}\n")
	b.WriteString("table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:13px}\n")
	b.WriteString(".swatch{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}\n")
	b.WriteString("#picture{overflow-x:auto}\n.warning{color:#a00}\n</style>\n</head>\n<body>\n")
	fmt.Fprintf(&b, "<h1>tandem: nodes and prefill→decode pairs</h1>\n<p>%d nodes, %d groups, %d pairs. KV-transfer times are the cost model's for a %d-token prompt (%.2f GB).</p>\n",
		len(v.Nodes), len(v.Groups), pairCount(v), v.PromptTokens, v.KVBytes/1e9)
	for _, warn := range v.Warnings {
		fmt.Fprintf(&b, "<p class=\"warning\">%s</p>\n", esc(warn))
	}
	b.WriteString("<div id=\"picture\">\n")
	writeSVG(&b, v)
	b.WriteString("</div>\n<h2>Nodes</h2>\n<table id=\"node-table\">\n<tr><th>node</th>")
	for _, l := range v.Levels {
		fmt.Fprintf(&b, "<th>%s</th>", esc(l))
	}
	b.WriteString("<th>free/GPUs</th><th>free per island</th><th>GPUDirect</th><th>heartbeat</th></tr>\n")
	for _, n := range v.Nodes {
		fmt.Fprintf(&b, "<tr class=\"node-row\" data-node=\"%s\"><td>%s</td>", esc(n.Name), esc(n.Name))
		for _, d := range n.Domains {
			fmt.Fprintf(&b, "<td>%s</td>", esc(orDash(d)))
		}
		switch {
		case !n.Reported:
			b.WriteString("<td>-</td><td>no NodeTopology</td><td>-</td><td>-</td>")
		case n.Error != "":
			fmt.Fprintf(&b, "<td>-</td><td class=\"warning\">%s</td><td>%s</td><td>%s</td>", esc(n.Error), esc(gpuDirect(n)), esc(heartbeat(n)))
		default:
			fmt.Fprintf(&b, "<td>%d/%d</td><td>%s</td><td>%s</td><td>%s</td>", n.FreeGPUs, n.GPUs, esc(islands(n)), esc(gpuDirect(n)), esc(heartbeat(n)))
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("</table>\n<h2>Pairs</h2>\n<table id=\"pair-table\">\n<tr><th>namespace</th><th>group</th><th>unit</th><th>prefill</th><th>prefill node</th><th>decode</th><th>decode node</th><th>path</th><th>KV transfer</th></tr>\n")
	for _, g := range v.Groups {
		for _, p := range g.Pairs {
			fmt.Fprintf(&b, "<tr class=\"pair-row\" data-prefill=\"%s\" data-decode=\"%s\" data-class=\"%s\"><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td><span class=\"swatch\" style=\"background:%s\"></span>%s</td><td>%s</td></tr>\n",
				esc(p.Prefill), esc(p.Decode), esc(string(p.Class)), esc(g.Namespace), esc(g.Name), esc(orDash(p.Unit)), esc(orDash(p.Prefill)), esc(orDash(p.PrefillNode)),
				esc(p.Decode), esc(p.DecodeNode), colourOf(v, p.Class), esc(string(p.Class)), esc(transfer(p)))
		}
	}
	b.WriteString("</table>\n</body>\n</html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func pairCount(v *View) int {
	n := 0
	for _, g := range v.Groups {
		n += len(g.Pairs)
	}
	return n
}

func esc(s string) string { return html.EscapeString(s) }

// clip shortens s to at most n runes, marking the cut.
func clip(s string, n int) string {
	r := []rune(s)
	if n < 2 || len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
