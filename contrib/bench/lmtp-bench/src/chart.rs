//! `lmtp-bench chart`: three self-contained SVG charts (throughput against the disk's
//! ceiling, latency percentiles, peak RSS against message size) drawn by hand from the raw
//! results file of contrib/bench/run.sh, with no plotting crate and nothing fetched.
//!
//! The results file holds one line per run, `WL SERVER STORE REP RESULT key=value ...`, and
//! one per interleaved disk probe, `WL probe KIND REP DISK key=value ...`. Lines of any other
//! shape are ignored. Values are the medians over the repetitions of each
//! (workload, server, store, key), as the report's tables take them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

use getopts::Options;

/// The main workloads, in chart order.
const WORKLOADS: [&str; 7] = ["a", "b", "b-bdat", "b8", "c", "c8", "d"];
/// The server+store series of the latency and RSS charts: label, server, store, colour.
const SERIES: [(&str, &str, &str, &str); 5] = [
    ("lmtpd Maildir", "lmtpd", "maildir", "#1f5fa8"),
    ("lmtpd mbox", "lmtpd", "mbox", "#3a9bd9"),
    ("lmtpd SQLite", "lmtpd", "sqlite", "#2e8b57"),
    ("Dovecot Maildir", "dovecot", "maildir", "#d2691e"),
    ("Dovecot mbox", "dovecot", "mbox", "#e8a33d"),
];
/// The memory runs: workload name and message size in MiB.
const RSS_RUNS: [(&str, f64); 3] = [("rss1", 1.0), ("rss10", 10.0), ("rss100", 100.0)];
/// Font used by every text element.
const FONT: &str = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\"";

/// The values of every (workload, server, store, key) over the repetitions.
#[derive(Debug, Default)]
struct Results {
    values: BTreeMap<(String, String, String, String), Vec<f64>>,
}

impl Results {
    /// Reads the results file's text; lines that are neither run nor probe lines, runs that
    /// did not store what they acknowledged (`ok=no`), and values that are not numbers, are
    /// skipped.
    fn parse(text: &str) -> Results {
        let mut r = Results::default();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 || !matches!(f[4], "RESULT" | "DISK") || f.last() == Some(&"ok=no") {
                continue;
            }
            for kv in &f[5..] {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let Ok(v) = v.parse::<f64>() else {
                    continue;
                };
                if !v.is_finite() {
                    continue;
                }
                r.values
                    .entry((f[0].into(), f[1].into(), f[2].into(), k.into()))
                    .or_default()
                    .push(v);
            }
        }
        r
    }

    /// The median of a key over the repetitions (the mean of the middle two for an even
    /// count), or `None` when there is no value.
    fn median(&self, wl: &str, server: &str, store: &str, key: &str) -> Option<f64> {
        let mut v = self
            .values
            .get(&(wl.into(), server.into(), store.into(), key.into()))?
            .clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }

    /// [`Results::median`], only when positive (what a log axis can show).
    fn positive(&self, wl: &str, server: &str, store: &str, key: &str) -> Option<f64> {
        self.median(wl, server, store, key).filter(|&v| v > 0.0)
    }
}

/// Text made safe for XML character data and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A logarithmic axis: maps values between two powers of ten onto a pixel range.
#[derive(Clone, Copy, Debug)]
struct LogScale {
    /// log10 of the lowest and highest value on the axis (whole numbers).
    lo: f64,
    hi: f64,
    /// Pixel positions of the lowest and highest value.
    from: f64,
    to: f64,
}

impl LogScale {
    /// An axis covering `min..=max` (positive), widened to whole decades.
    fn new(min: f64, max: f64, from: f64, to: f64) -> LogScale {
        let min = if min > 0.0 && min.is_finite() {
            min
        } else {
            1.0
        };
        let max = if max >= min && max.is_finite() {
            max
        } else {
            min
        };
        let lo = min.log10().floor();
        let mut hi = max.log10().ceil();
        if hi <= lo {
            hi = lo + 1.0;
        }
        LogScale { lo, hi, from, to }
    }

    /// The pixel position of `v` (clamped to the axis).
    fn map(&self, v: f64) -> f64 {
        let l = v.max(1e-300).log10().clamp(self.lo, self.hi);
        self.from + (l - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }

    /// Gridline values: 1, 2 and 5 times every power of ten on the axis (only the powers
    /// when the axis spans more than four decades).
    fn ticks(&self) -> Vec<(f64, bool)> {
        let mut t = Vec::new();
        let dense = self.hi - self.lo <= 4.0;
        let mut e = self.lo;
        while e <= self.hi {
            let p = 10f64.powf(e);
            t.push((p, true));
            if dense && e < self.hi {
                t.push((2.0 * p, false));
                t.push((5.0 * p, false));
            }
            e += 1.0;
        }
        t
    }
}

/// A short label for an axis value: 0.1, 2, 50, 1k, 20k.
fn tick_label(v: f64) -> String {
    if v >= 1000.0 {
        let k = v / 1000.0;
        if (k - k.round()).abs() < 1e-9 {
            format!("{}k", k.round())
        } else {
            format!("{k:.1}k")
        }
    } else if v >= 1.0 {
        format!("{}", v.round())
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

/// A value for a tooltip: three significant digits or so.
fn value_label(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// An SVG document being written.
struct Svg {
    out: String,
    width: f64,
    height: f64,
}

impl Svg {
    /// Starts a document of the given size with a title (shown, and as `<title>`).
    fn new(width: f64, height: f64, title: &str) -> Svg {
        let mut out = String::new();
        let t = escape(title);
        let _ = write!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
             viewBox=\"0 0 {width} {height}\">\n<title>{t}</title>\n\
             <rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" fill=\"#ffffff\"/>\n"
        );
        let mut svg = Svg { out, width, height };
        svg.text(width / 2.0, 26.0, 17.0, "middle", "bold", title);
        svg
    }

    /// A text element; `anchor` is start, middle or end, `weight` normal or bold.
    fn text(&mut self, x: f64, y: f64, size: f64, anchor: &str, weight: &str, s: &str) {
        let _ = writeln!(
            self.out,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" text-anchor=\"{anchor}\" \
             font-weight=\"{weight}\" {FONT} fill=\"#222222\">{}</text>",
            escape(s)
        );
    }

    /// Text turned 90° counter-clockwise about its anchor point.
    fn vtext(&mut self, x: f64, y: f64, size: f64, s: &str) {
        let _ = writeln!(
            self.out,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" text-anchor=\"middle\" \
             transform=\"rotate(-90 {x:.1} {y:.1})\" {FONT} fill=\"#222222\">{}</text>",
            escape(s)
        );
    }

    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, width: f64) {
        let _ = writeln!(
            self.out,
            "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" \
             stroke=\"{stroke}\" stroke-width=\"{width}\"/>"
        );
    }

    /// A filled rectangle with a tooltip.
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, tip: &str) {
        let _ = writeln!(
            self.out,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" \
             fill=\"{fill}\"><title>{}</title></rect>",
            escape(tip)
        );
    }

    /// A marker of the given shape (circle, square, diamond, bar) centred on x, y.
    fn marker(&mut self, shape: &str, x: f64, y: f64, fill: &str, tip: &str) {
        let tip = escape(tip);
        let _ = match shape {
            "circle" => writeln!(
                self.out,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{fill}\"><title>{tip}</title></circle>"
            ),
            "square" => writeln!(
                self.out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"7\" height=\"7\" fill=\"{fill}\"><title>{tip}</title></rect>",
                x - 3.5,
                y - 3.5
            ),
            "diamond" => writeln!(
                self.out,
                "<path d=\"M {x:.1} {:.1} L {:.1} {y:.1} L {x:.1} {:.1} L {:.1} {y:.1} Z\" \
                 fill=\"{fill}\"><title>{tip}</title></path>",
                y - 5.0,
                x + 5.0,
                y + 5.0,
                x - 5.0
            ),
            _ => writeln!(
                self.out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"2.5\" fill=\"{fill}\"><title>{tip}</title></rect>",
                x - 6.0,
                y - 1.25
            ),
        };
    }

    /// Horizontal gridlines and labels of a logarithmic y axis from `x0` to `x1`.
    fn log_grid(&mut self, s: &LogScale, x0: f64, x1: f64) {
        for (v, major) in s.ticks() {
            let y = s.map(v);
            let (stroke, w) = if major {
                ("#bbbbbb", 1.0)
            } else {
                ("#e4e4e4", 1.0)
            };
            self.line(x0, y, x1, y, stroke, w);
            self.text(x0 - 6.0, y + 4.0, 11.0, "end", "normal", &tick_label(v));
        }
        self.line(x0, s.from, x0, s.to, "#444444", 1.0);
    }

    /// A legend row of colour swatches (or marker shapes) starting at x, y.
    fn legend(&mut self, x: f64, y: f64, items: &[(&str, &str, &str)]) {
        let mut x = x;
        for &(shape, colour, label) in items {
            if shape == "swatch" {
                self.rect(x, y - 9.0, 12.0, 12.0, colour, label);
            } else {
                self.marker(shape, x + 6.0, y - 3.0, colour, label);
            }
            self.text(x + 17.0, y + 1.0, 12.0, "start", "normal", label);
            // Wide enough for the labels used here at 12 px.
            x += 30.0 + 7.0 * label.chars().count() as f64;
        }
    }

    /// Draws the x axis line at `bottom` from `left` to `right` with `caption` centred
    /// `below` it, then ends the document with the footer note.
    fn close_x_axis(
        mut self,
        left: f64,
        right: f64,
        bottom: f64,
        below: f64,
        caption: &str,
        note: &str,
    ) -> String {
        self.line(left, bottom, right, bottom, "#444444", 1.0);
        self.text(
            (left + right) / 2.0,
            bottom + below,
            12.0,
            "middle",
            "normal",
            caption,
        );
        self.finish(note)
    }

    /// Ends the document with the footer note.
    fn finish(mut self, note: &str) -> String {
        let (w, h) = (self.width, self.height);
        self.text(w / 2.0, h - 10.0, 11.0, "middle", "normal", note);
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// The probe a store's row is set against: SQLite keeps bodies of `body_files` bytes or more
/// (the server's `sqlite_body_files`, 0: none) as body files, so for a workload whose
/// messages are that large its durable unit is a file, not a commit.
fn ceiling_kind<'a>(r: &Results, wl: &str, store: &str, kind: &'a str, body_files: f64) -> &'a str {
    let large = r
        .median(wl, "lmtpd", store, "size")
        .is_some_and(|size| body_files > 0.0 && size >= body_files);
    if store == "sqlite" && large {
        "file"
    } else {
        kind
    }
}

/// Deliveries/s of lmtpd and Dovecot against the matching disk ceiling, per main workload
/// and store, on a log axis.
fn throughput_svg(r: &Results, note: &str, body_files: f64) -> String {
    let (w, h) = (1400.0, 580.0);
    let (left, right, top, bottom) = (80.0, 1380.0, 80.0, 470.0);
    let kinds = [
        ("maildir", "file"),
        ("mbox", "append"),
        ("sqlite", "commit"),
    ];
    // (workload, store, [lmtpd, Dovecot, ceiling]).
    let mut groups = Vec::new();
    for wl in WORKLOADS {
        for (store, kind) in kinds {
            let dvs = if store == "sqlite" { "maildir" } else { store };
            let kind = ceiling_kind(r, wl, store, kind, body_files);
            groups.push((
                wl,
                store,
                [
                    r.positive(wl, "lmtpd", store, "dps"),
                    r.positive(wl, "dovecot", dvs, "dps"),
                    r.positive(wl, "probe", kind, "per_s"),
                ],
            ));
        }
    }
    let all: Vec<f64> = groups.iter().flat_map(|g| g.2).flatten().collect();
    let min = all.iter().copied().fold(f64::INFINITY, f64::min);
    let max = all.iter().copied().fold(0.0, f64::max);
    let (min, max) = if all.is_empty() {
        (10.0, 100_000.0)
    } else {
        (min, max)
    };
    let s = LogScale::new(min, max, bottom, top);
    let mut svg = Svg::new(w, h, "Deliveries per second against the disk's ceiling");
    let colours = ["#1f5fa8", "#d2691e", "#9a9a9a"];
    svg.legend(
        left + 10.0,
        56.0,
        &[
            ("swatch", colours[0], "lmtpd"),
            (
                "swatch",
                colours[1],
                "Dovecot (for SQLite: Dovecot Maildir)",
            ),
            (
                "swatch",
                colours[2],
                "disk ceiling: probe cycles/s (file / append / commit, one fsync each)",
            ),
        ],
    );
    svg.log_grid(&s, left, right);
    svg.vtext(24.0, (top + bottom) / 2.0, 12.0, "deliveries/s (log scale)");
    let gw = (right - left) / groups.len() as f64;
    let bw = gw * 0.26;
    for (i, (wl, store, vals)) in groups.iter().enumerate() {
        let x0 = left + i as f64 * gw;
        if i % 3 == 0 && i > 0 {
            svg.line(x0, top, x0, bottom + 44.0, "#cccccc", 1.0);
        }
        let names = ["lmtpd", "Dovecot", "ceiling"];
        for (j, v) in vals.iter().enumerate() {
            let Some(v) = v else { continue };
            let y = s.map(*v);
            let x = x0 + gw * 0.11 + j as f64 * bw;
            let tip = format!("{wl} {store} {}: {}/s", names[j], value_label(*v));
            svg.rect(x, y, bw, (bottom - y).max(0.5), colours[j], &tip);
        }
        svg.text(
            x0 + gw / 2.0,
            bottom + 16.0,
            11.0,
            "middle",
            "normal",
            store,
        );
        if i % 3 == 1 {
            svg.text(x0 + gw / 2.0, bottom + 38.0, 14.0, "middle", "bold", wl);
        }
    }
    svg.close_x_axis(
        left,
        right,
        bottom,
        62.0,
        "workload and store (ceiling: Maildir - file probe, mbox - append probe, SQLite - commit probe (d: file probe, its bodies are body files), with the workload's threads, size and mailboxes)",
        note,
    )
}

/// Latency percentiles (p50, p90, p99, max) per main workload and server+store, log axis.
fn latency_svg(r: &Results, note: &str) -> String {
    let (w, h) = (1300.0, 560.0);
    let (left, right, top, bottom) = (80.0, 1280.0, 100.0, 470.0);
    let pcts = [
        ("p50_ms", "circle", "p50"),
        ("p90_ms", "square", "p90"),
        ("p99_ms", "diamond", "p99"),
        ("max_ms", "bar", "max"),
    ];
    let mut all = Vec::new();
    for wl in WORKLOADS {
        for (_, sv, st, _) in SERIES {
            for (k, _, _) in pcts {
                all.extend(r.positive(wl, sv, st, k));
            }
        }
    }
    let min = all.iter().copied().fold(f64::INFINITY, f64::min);
    let max = all.iter().copied().fold(0.0, f64::max);
    let (min, max) = if all.is_empty() {
        (0.1, 1000.0)
    } else {
        (min, max)
    };
    let s = LogScale::new(min, max, bottom, top);
    let mut svg = Svg::new(w, h, "Latency per recipient reply (final dot to reply)");
    let series: Vec<(&str, &str, &str)> = SERIES
        .iter()
        .map(|&(l, _, _, c)| ("swatch", c, l))
        .collect();
    svg.legend(left + 10.0, 54.0, &series);
    let shapes: Vec<(&str, &str, &str)> = pcts
        .iter()
        .map(|&(_, shape, label)| (shape, "#555555", label))
        .collect();
    svg.legend(left + 10.0, 78.0, &shapes);
    svg.log_grid(&s, left, right);
    svg.vtext(24.0, (top + bottom) / 2.0, 12.0, "milliseconds (log scale)");
    let gw = (right - left) / WORKLOADS.len() as f64;
    let slot = gw / (SERIES.len() as f64 + 1.0);
    for (i, wl) in WORKLOADS.iter().enumerate() {
        let x0 = left + i as f64 * gw;
        if i > 0 {
            svg.line(x0, top, x0, bottom + 24.0, "#cccccc", 1.0);
        }
        for (j, (label, sv, st, colour)) in SERIES.iter().enumerate() {
            let x = x0 + slot * (j as f64 + 1.0);
            let vals: Vec<Option<f64>> = pcts
                .iter()
                .map(|(k, _, _)| r.positive(wl, sv, st, k))
                .collect();
            let present: Vec<f64> = vals.iter().flatten().copied().collect();
            if present.len() >= 2 {
                let lo = present.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = present.iter().copied().fold(0.0, f64::max);
                svg.line(x, s.map(lo), x, s.map(hi), colour, 2.0);
            }
            for ((_, shape, name), v) in pcts.iter().zip(&vals) {
                if let Some(v) = v {
                    let tip = format!("{wl} {label} {name}: {} ms", value_label(*v));
                    svg.marker(shape, x, s.map(*v), colour, &tip);
                }
            }
        }
        svg.text(x0 + gw / 2.0, bottom + 20.0, 14.0, "middle", "bold", wl);
    }
    svg.close_x_axis(
        left,
        right,
        bottom,
        44.0,
        "workload (medians over the repetitions of each percentile)",
        note,
    )
}

/// Peak RSS against message size (1, 10, 100 MiB, one session), one line per
/// server+store; log x axis, linear y axis from 0.
fn rss_svg(r: &Results, note: &str) -> String {
    let (w, h) = (900.0, 520.0);
    let (left, right, top, bottom) = (80.0, 640.0, 60.0, 430.0);
    let xs = LogScale::new(1.0, 100.0, left + 20.0, right - 20.0);
    let mut lines = Vec::new();
    for (label, sv, st, colour) in SERIES {
        let pts: Vec<(f64, f64)> = RSS_RUNS
            .iter()
            .filter_map(|&(wl, mib)| r.positive(wl, sv, st, "rss_kib").map(|k| (mib, k / 1024.0)))
            .collect();
        if !pts.is_empty() {
            lines.push((label, colour, pts));
        }
    }
    let ymax = lines
        .iter()
        .flat_map(|l| l.2.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    // A round top: 1, 2 or 5 times a power of ten, with five gridlines below it.
    let top_value = {
        let m = ymax.max(1.0) * 1.1;
        let p = 10f64.powf(m.log10().floor());
        [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|f| f * p)
            .find(|v| *v >= m)
            .unwrap_or(10.0 * p)
    };
    let ymap = |v: f64| bottom - v / top_value * (bottom - top);
    let mut svg = Svg::new(w, h, "Peak RSS against message size (1 session)");
    for i in 0..=5 {
        let v = top_value * f64::from(i) / 5.0;
        let y = ymap(v);
        svg.line(
            left,
            y,
            right,
            y,
            if i == 0 { "#444444" } else { "#dddddd" },
            1.0,
        );
        let label = if top_value >= 10.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        };
        svg.text(left - 6.0, y + 4.0, 11.0, "end", "normal", &label);
    }
    svg.line(left, top, left, bottom, "#444444", 1.0);
    for (_, mib) in RSS_RUNS {
        let x = xs.map(mib);
        svg.line(x, bottom, x, bottom + 5.0, "#444444", 1.0);
        svg.text(
            x,
            bottom + 20.0,
            12.0,
            "middle",
            "normal",
            &format!("{mib} MiB"),
        );
    }
    svg.text(
        (left + right) / 2.0,
        bottom + 44.0,
        12.0,
        "middle",
        "normal",
        "message size (log scale)",
    );
    svg.vtext(24.0, (top + bottom) / 2.0, 12.0, "peak RSS, MiB (VmHWM)");
    for (label, colour, pts) in &lines {
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", xs.map(x), ymap(y)))
            .collect();
        let _ = writeln!(
            svg.out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
            path.join(" ")
        );
        for &(x, y) in pts {
            let tip = format!("{label}, {x} MiB messages: {} MiB", value_label(y));
            svg.marker("circle", xs.map(x), ymap(y), colour, &tip);
        }
    }
    // The legend, to the right of the plot.
    let mut y = top + 10.0;
    for (label, _, _, colour) in SERIES {
        if !lines.iter().any(|l| l.0 == label) {
            continue;
        }
        svg.rect(right + 20.0, y - 9.0, 12.0, 12.0, colour, label);
        svg.text(right + 38.0, y + 1.0, 12.0, "start", "normal", label);
        y += 22.0;
    }
    svg.finish(note)
}

/// `lmtp-bench chart --results FILE --out DIR [--note TEXT] [--sqlite-body-files BYTES]`:
/// writes throughput.svg, latency.svg and rss.svg into DIR. BYTES is the servers'
/// `sqlite_body_files` (default 262144, lmtpd's own default).
pub(crate) fn chart_main(args: &[String]) -> Result<bool, String> {
    let mut o = Options::new();
    o.optopt("", "results", "", "FILE");
    o.optopt("", "out", "", "DIR");
    o.optopt("", "note", "", "TEXT");
    o.optopt("", "sqlite-body-files", "", "BYTES");
    let m = o.parse(args).map_err(|e| e.to_string())?;
    let body_files: u64 = match m.opt_str("sqlite-body-files") {
        Some(v) => v
            .parse()
            .map_err(|_| format!("--sqlite-body-files: not a number of bytes: {v}"))?,
        None => 256 << 10,
    };
    if let Some(extra) = m.free.first() {
        return Err(format!("unexpected argument '{extra}'"));
    }
    let results = m.opt_str("results").ok_or("--results is required")?;
    let out = PathBuf::from(m.opt_str("out").ok_or("--out is required")?);
    let note = m.opt_str("note").unwrap_or_default();
    let text = fs::read_to_string(&results).map_err(|e| format!("{results}: {e}"))?;
    let r = Results::parse(&text);
    fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (name, svg) in [
        (
            "throughput.svg",
            throughput_svg(&r, &note, body_files as f64),
        ),
        ("latency.svg", latency_svg(&r, &note)),
        ("rss.svg", rss_svg(&r, &note)),
    ] {
        let p = out.join(name);
        fs::write(&p, svg).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
b lmtpd maildir 1 RESULT label=x dps=100.0 p50_ms=2.0 p90_ms=3 p99_ms=5 max_ms=9 rss_kib=- stored=600 ok=yes
b lmtpd maildir 2 RESULT label=x dps=300.0 p50_ms=4.0 p90_ms=5 p99_ms=7 max_ms=11 stored=600 ok=yes
b lmtpd maildir 3 RESULT label=x dps=200.0 p50_ms=3.0 p90_ms=4 p99_ms=6 max_ms=10 stored=600 ok=yes
b dovecot maildir 1 RESULT dps=50 p50_ms=8 stored=600 ok=yes
b dovecot maildir 2 RESULT dps=70 p50_ms=9 stored=600 ok=yes
b probe file 1 DISK threads=8 dirsync=1 kind=file per_s=400 cpu_user_ms_per_op=0.01
b probe file 2 DISK threads=8 dirsync=1 kind=file per_s=600 cpu_user_ms_per_op=0.02
d lmtpd sqlite 1 START_FAILED
rss1 lmtpd maildir 1 RESULT rss_kib=4096 ok=yes
rss10 lmtpd maildir 1 RESULT rss_kib=5120 ok=yes
rss100 lmtpd maildir 1 RESULT rss_kib=6144 ok=yes
rss1 dovecot mbox 1 RESULT rss_kib=40960 ok=yes
garbage line
DISK threads=1 dirsync=1 per_s=5
";

    /// Whether every element opened is closed in order, ignoring the XML declaration.
    fn balanced(svg: &str) -> bool {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(i) = rest.find('<') {
            let Some(j) = rest[i..].find('>') else {
                return false;
            };
            let tag = &rest[i + 1..i + j];
            rest = &rest[i + j + 1..];
            if tag.starts_with('?') || tag.ends_with('/') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                if stack.pop().as_deref() != Some(name) {
                    return false;
                }
            } else {
                let name = tag.split_whitespace().next().unwrap_or("");
                stack.push(name.to_string());
            }
        }
        stack.is_empty() && !rest.contains('>')
    }

    #[test]
    fn sqlite_is_set_against_the_file_probe_exactly_when_its_bodies_are_body_files() {
        let r = Results::parse(
            "d lmtpd sqlite 1 RESULT size=10485760 dps=50 ok=yes\n\
             b lmtpd sqlite 1 RESULT size=4096 dps=900 ok=yes\n\
             f lmtpd sqlite 1 RESULT size=262144 dps=90 ok=yes\n",
        );
        let kind = |wl, store, body_files| ceiling_kind(&r, wl, store, "commit", body_files);
        assert_eq!(kind("d", "sqlite", 262_144.0), "file");
        assert_eq!(kind("f", "sqlite", 262_144.0), "file", "at the threshold");
        assert_eq!(kind("b", "sqlite", 262_144.0), "commit");
        assert_eq!(kind("d", "sqlite", 0.0), "commit", "body files off");
        assert_eq!(
            kind("d", "mbox", 262_144.0),
            "commit",
            "only SQLite has body files"
        );
        assert_eq!(kind("x", "sqlite", 262_144.0), "commit", "no run, no size");
    }

    #[test]
    fn a_run_that_lost_mail_is_left_out_of_the_medians() {
        let r = Results::parse(
            "b lmtpd mbox 1 RESULT dps=100 stored=10 ok=yes\n\
             b lmtpd mbox 2 RESULT dps=9000 stored=3 ok=no\n\
             b lmtpd mbox 3 RESULT dps=300 stored=10 ok=yes\n",
        );
        assert_eq!(r.median("b", "lmtpd", "mbox", "dps"), Some(200.0));
    }

    #[test]
    fn medians_come_from_run_and_probe_lines_and_the_rest_is_ignored() {
        let r = Results::parse(SAMPLE);
        assert_eq!(r.median("b", "lmtpd", "maildir", "dps"), Some(200.0));
        assert_eq!(r.median("b", "lmtpd", "maildir", "p50_ms"), Some(3.0));
        assert_eq!(r.median("b", "dovecot", "maildir", "dps"), Some(60.0));
        assert_eq!(r.median("b", "probe", "file", "per_s"), Some(500.0));
        assert_eq!(
            r.median("b", "probe", "file", "cpu_user_ms_per_op"),
            Some(0.015)
        );
        // "-" is not a number; START_FAILED and stray lines carry nothing.
        assert_eq!(r.median("b", "lmtpd", "maildir", "rss_kib"), None);
        assert_eq!(r.median("d", "lmtpd", "sqlite", "dps"), None);
        assert_eq!(r.median("garbage", "line", "", "x"), None);
        assert!(!r.values.keys().any(|k| k.0 == "DISK" || k.0 == "garbage"));
    }

    #[test]
    fn log_scale_is_monotonic_and_spans_whole_decades() {
        let s = LogScale::new(20.0, 30_000.0, 500.0, 100.0);
        assert_eq!((s.lo, s.hi), (1.0, 5.0));
        assert_eq!(s.map(10.0), 500.0);
        assert_eq!(s.map(100_000.0), 100.0);
        let vals = [10.0, 20.0, 99.0, 100.0, 101.0, 5000.0, 30_000.0, 100_000.0];
        assert!(vals.windows(2).all(|w| s.map(w[0]) > s.map(w[1])));
        assert!(
            (s.map(1000.0) - 300.0).abs() < 1e-9,
            "decades are evenly spaced"
        );
        let t = s.ticks();
        assert!(t.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(t.first().map(|t| t.0), Some(10.0));
        assert_eq!(t.last().map(|t| t.0), Some(100_000.0));
        assert_eq!(tick_label(20_000.0), "20k");
        assert_eq!(tick_label(0.5), "0.5");
        // A degenerate range still gives an axis.
        let s = LogScale::new(5.0, 5.0, 0.0, 1.0);
        assert!(s.hi > s.lo);
    }

    #[test]
    fn the_charts_are_well_formed_and_carry_series_and_note() {
        let r = Results::parse(SAMPLE);
        let note = "lmtpd v1-2-g<abc> & co, 2 CPUs";
        let t = throughput_svg(&r, note, 262_144.0);
        let l = latency_svg(&r, note);
        let m = rss_svg(&r, note);
        for svg in [&t, &l, &m] {
            assert!(balanced(svg), "{svg}");
            assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
            assert!(svg.contains("lmtpd v1-2-g&lt;abc&gt; &amp; co, 2 CPUs"));
            assert!(!svg.contains("<abc>"));
        }
        assert!(t.contains("b maildir lmtpd: 200/s"));
        assert!(t.contains("b maildir Dovecot: 60.0/s"));
        assert!(t.contains("b maildir ceiling: 500/s"));
        assert!(t.contains("disk ceiling"));
        assert!(l.contains("b lmtpd Maildir p99: 6.0 ms"));
        assert!(l.contains("b Dovecot Maildir p50: 8.5 ms"));
        assert!(m.contains("lmtpd Maildir, 100 MiB messages: 6.0 MiB"));
        assert!(m.contains("Dovecot mbox"));
        // Series without data are left out, not drawn at zero.
        assert!(!m.contains("lmtpd SQLite"));
        assert!(!t.contains("a maildir lmtpd"));
        // No data at all still gives valid, empty charts.
        let empty = Results::parse("");
        for svg in [
            throughput_svg(&empty, "", 262_144.0),
            latency_svg(&empty, ""),
            rss_svg(&empty, ""),
        ] {
            assert!(balanced(&svg));
        }
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(escape("x\ny"), "x y");
    }
}
