package main

import (
	"fmt"
	"html"
	"io"
	"math"
)

// WriteSVG draws the latency chart: per workload and concurrency, the HTTP
// p50 bar with a p99 whisker next to its floor's, on a log scale.
func (r *Report) WriteSVG(w io.Writer) error {
	const (
		left, right, top, rowH, barH = 170.0, 30.0, 50.0, 34.0, 11.0
		width                        = 900.0
	)
	rows := len(r.Workloads)
	height := top + float64(rows)*rowH + 60
	lo, hi := 0.1, 1.0
	for _, wl := range r.Workloads {
		for _, v := range []float64{wl.HTTP.P99ms, wl.Floor.P99ms} {
			for v > hi {
				hi *= 10
			}
		}
	}
	plotW := width - left - right
	x := func(v float64) float64 {
		if v < lo {
			v = lo
		}
		return left + plotW*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="%.0f" y="20" font-size="15" font-weight="bold">Latency per workload: HTTP vs floor (bar p50, whisker p99, ms, log scale)</text>`+"\n", left-150)
	p(`<text x="%.0f" y="38" fill="#555">%s</text>`+"\n", left-150, html.EscapeString("store: "+r.Store.Label+" "+r.Store.Version))
	bottom := top + float64(rows)*rowH
	for d := lo; d <= hi*1.0001; d *= 10 {
		xx := x(d)
		p(`<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ddd"/>`+"\n", xx, top, xx, bottom)
		p(`<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%g</text>`+"\n", xx, bottom+16, d)
	}
	bar := func(y float64, s Summary, color string) {
		if s.Ops == 0 {
			return
		}
		p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", left, y, math.Max(x(s.P50ms)-left, 1), barH, color)
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", x(s.P50ms), y+barH/2, x(s.P99ms), y+barH/2, color)
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", x(s.P99ms), y, x(s.P99ms), y+barH, color)
	}
	for i, wl := range r.Workloads {
		y := top + float64(i)*rowH + 5
		p(`<text x="%.0f" y="%.1f" text-anchor="end">%s c=%d</text>`+"\n", left-8, y+barH+4, html.EscapeString(wl.Name), wl.Concurrency)
		bar(y, wl.HTTP, "#2b6cb0")
		bar(y+barH+1, wl.Floor, "#a0aec0")
	}
	ly := bottom + 36
	p(`<rect x="%.0f" y="%.0f" width="12" height="10" fill="#2b6cb0"/><text x="%.0f" y="%.0f">HTTP</text>`+"\n", left, ly, left+16, ly+9)
	p(`<rect x="%.0f" y="%.0f" width="12" height="10" fill="#a0aec0"/><text x="%.0f" y="%.0f">floor (raw driver + publish)</text>`+"\n", left+70, ly, left+86, ly+9)
	_, err := io.WriteString(w, "</svg>\n")
	return err
}
