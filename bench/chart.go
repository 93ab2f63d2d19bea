//go:build linux

package main

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strings"
)

// point is one scenario's value for one server.
type point struct {
	clients float64
	value   float64
	label   string
}

type series struct {
	name   string
	color  string
	marker string // "circle" or "square"
	points []point
}

// chartSeries collects, for each server, the curve scenarios' CPU per
// delivery and p99 latency by number of clients.
func chartSeries(res *results) (cpu, p99 []series) {
	style := map[string][2]string{"ws2sse": {"#1f6feb", "circle"}, "baseline": {"#d1242f", "square"}}
	for _, kind := range res.servers() {
		c := series{name: kind, color: style[kind][0], marker: style[kind][1]}
		l := c
		for _, name := range res.Order {
			sc, ok := scenarioByName(name)
			if !ok || !sc.Curve {
				continue
			}
			r := find(res.Runs[name], kind)
			if !usable(r) || r.Latency.N == 0 {
				continue
			}
			x := float64(r.Clients)
			c.points = append(c.points, point{x, r.CPUPerDelivery, name})
			l.points = append(l.points, point{x, r.Latency.P99, name})
		}
		for _, s := range []*series{&c, &l} {
			sort.Slice(s.points, func(i, j int) bool { return s.points[i].clients < s.points[j].clients })
		}
		if len(c.points) > 0 {
			cpu = append(cpu, c)
			p99 = append(p99, l)
		}
	}
	return cpu, p99
}

// renderChart draws two panels: CPU per delivery (linear, with the floor
// and 1.25 × floor) and p99 latency (logarithmic), against clients.
func renderChart(res *results) string {
	cpu, p99 := chartSeries(res)
	const w, h = 960, 420
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", w, h)
	title := "ws2sse and a plain Go SSE server, one channel at 10 events/s"
	if res.Quick {
		title += " (quick run)"
	}
	fmt.Fprintf(&b, `<text x="%d" y="22" text-anchor="middle" font-size="15" font-weight="bold">%s</text>`+"\n", w/2, html.EscapeString(title))
	floor := res.Floor.PerWrite
	panel(&b, 60, 50, 400, 300, "CPU per delivery (µs)", cpu, false, floor)
	panel(&b, 540, 50, 400, 300, "p99 latency (ms, log scale)", p99, true, 0)
	// Legend.
	x := 300
	for _, s := range cpu {
		marker(&b, s, float64(x), 395)
		fmt.Fprintf(&b, `<text x="%d" y="399">%s</text>`+"\n", x+10, html.EscapeString(s.name))
		x += 110
	}
	if floor > 0 {
		fmt.Fprintf(&b, `<line x1="%d" y1="395" x2="%d" y2="395" stroke="#555" stroke-dasharray="4 3"/>`+"\n", x, x+20)
		fmt.Fprintf(&b, `<text x="%d" y="399">floor (%.2f µs) and 1.25 × floor</text>`+"\n", x+26, floor)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func panel(b *strings.Builder, x0, y0, pw, ph int, title string, ss []series, logY bool, floor float64) {
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle" font-weight="bold">%s</text>`+"\n", x0+pw/2, y0-8, html.EscapeString(title))
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", x0, y0, pw, ph)
	maxX, maxY, minY := 1.0, 0.0, math.Inf(1)
	for _, s := range ss {
		for _, p := range s.points {
			maxX = max(maxX, p.clients)
			maxY = max(maxY, p.value)
			if p.value > 0 {
				minY = min(minY, p.value)
			}
		}
	}
	if floor > 0 {
		maxY = max(maxY, floor*1.25)
	}
	if maxY == 0 {
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle" fill="#888">no data</text>`+"\n", x0+pw/2, y0+ph/2)
		return
	}
	xMax := niceCeil(maxX * 1.05)
	sx := func(v float64) float64 { return float64(x0) + v/xMax*float64(pw) }
	var sy func(float64) float64
	var ticks []float64
	if logY {
		lo := math.Pow(10, math.Floor(math.Log10(minY)))
		hi := math.Pow(10, math.Ceil(math.Log10(maxY*1.01)))
		if hi <= lo {
			hi = lo * 10
		}
		sy = func(v float64) float64 {
			v = max(v, lo)
			return float64(y0+ph) - (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*float64(ph)
		}
		for t := lo; t <= hi*1.001; t *= 10 {
			ticks = append(ticks, t)
		}
	} else {
		yMax := niceCeil(maxY * 1.1)
		sy = func(v float64) float64 { return float64(y0+ph) - v/yMax*float64(ph) }
		for i := 0; i <= 5; i++ {
			ticks = append(ticks, yMax*float64(i)/5)
		}
	}
	for _, t := range ticks {
		y := sy(t)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>`+"\n", x0+1, y, x0+pw-1, y)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, y+4, tickLabel(t))
	}
	for i := 0; i <= 4; i++ {
		v := xMax * float64(i) / 4
		x := sx(v)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, y0+ph+16, fmtInt(int64(v)))
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">clients</text>`+"\n", x0+pw/2, y0+ph+32)
	if floor > 0 {
		for _, f := range []float64{floor, 1.25 * floor} {
			y := sy(f)
			fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#555" stroke-dasharray="4 3"/>`+"\n", x0, y, x0+pw, y)
		}
		fmt.Fprintf(b, `<text x="%d" y="%.1f" fill="#555">floor</text>`+"\n", x0+pw-40, sy(floor)+14)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" fill="#555">1.25 × floor</text>`+"\n", x0+pw-80, sy(1.25*floor)-4)
	}
	for _, s := range ss {
		var pts []string
		for _, p := range s.points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", sx(p.clients), sy(p.value)))
		}
		fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), s.color)
		for _, p := range s.points {
			marker(b, s, sx(p.clients), sy(p.value))
			fmt.Fprintf(b, `<title>%s %s: %.3g</title>`+"\n", html.EscapeString(s.name), html.EscapeString(p.label), p.value)
		}
	}
}

func marker(b *strings.Builder, s series, x, y float64) {
	if s.marker == "square" {
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="8" height="8" fill="%s"/>`+"\n", x-4, y-4, s.color)
		return
	}
	fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="4.5" fill="%s"/>`+"\n", x, y, s.color)
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func tickLabel(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", v), "0"), ".")
	default:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
	}
}
