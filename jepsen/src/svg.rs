//! The picture: throughput (completions per second by outcome) and latency
//! (every operation, log scale) over time, with the fault windows shaded and
//! labelled, like Jepsen's latency graphs. Plain SVG written by hand.

use std::fmt::Write;

use crate::history::{FaultWindow, Op, Outcome};

const W: f64 = 1400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TP_TOP: f64 = 92.0;
const TP_H: f64 = 200.0;
const LAT_TOP: f64 = 352.0;
const LAT_H: f64 = 320.0;
const H: f64 = 732.0;
const MAX_POINTS: usize = 30_000;

fn color(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "#2a9d3a",
        Outcome::Fail => "#d62728",
        Outcome::Info => "#ff9f1c",
    }
}

fn fault_color(name: &str) -> &'static str {
    match name {
        n if n.starts_with("partition") => "#1f77b4",
        "kill" => "#d62728",
        "pause" => "#9467bd",
        "member" => "#8c564b",
        "transfer" => "#17becf",
        "loss" => "#bcbd22",
        "delay" => "#e377c2",
        _ => "#7f7f7f",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the SVG for client operations `ops` and `faults` over `[0, end_ns]`.
pub fn render(title: &str, ops: &[Op], faults: &[FaultWindow], end_ns: u64) -> String {
    let client_ops: Vec<&Op> = ops
        .iter()
        .filter(|o| o.invoke.process.starts_with('c'))
        .collect();
    let end_s = (end_ns as f64 / 1e9).max(1.0);
    let pw = W - LEFT - RIGHT;
    let x = |t_ns: u64| LEFT + (t_ns as f64 / 1e9) / end_s * pw;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="16" font-weight="bold">{}</text>"#,
        esc(title)
    );

    // Fault windows across both panels, labels staggered on 3 rows.
    for (i, f) in faults.iter().enumerate() {
        let (x0, x1) = (x(f.start_ns), x(f.end_ns.max(f.start_ns)));
        let c = fault_color(&f.fault);
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{TP_TOP}" width="{:.1}" height="{:.1}" fill="{c}" fill-opacity="0.15"><title>{}: {}</title></rect>"#,
            (x1 - x0).max(1.0),
            LAT_TOP + LAT_H - TP_TOP,
            esc(&f.fault),
            esc(&f.detail)
        );
        let ly = TP_TOP - 4.0 - (i % 3) as f64 * 11.0;
        let _ = writeln!(
            s,
            r#"<text x="{x0:.1}" y="{ly}" font-size="9" fill="{c}">{}</text>"#,
            esc(&f.fault)
        );
    }

    // Throughput: completions per 1 s bucket by outcome.
    let buckets = end_s.ceil() as usize + 1;
    let mut counts = [
        vec![0u32; buckets],
        vec![0u32; buckets],
        vec![0u32; buckets],
    ];
    for o in &client_ops {
        let t = o.complete.as_ref().map(|c| c.time_ns).unwrap_or(o.inv_ns);
        let b = ((t as f64 / 1e9) as usize).min(buckets - 1);
        let k = match o.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Info => 2,
        };
        counts[k][b] += 1;
    }
    let max_tp = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    axis(
        &mut s,
        TP_TOP,
        TP_H,
        "ops/s",
        &[(0.0, "0".to_string()), (1.0, format!("{max_tp:.0}"))],
        end_s,
        pw,
    );
    for (k, outcome) in [Outcome::Ok, Outcome::Fail, Outcome::Info]
        .iter()
        .enumerate()
    {
        let pts: Vec<String> = counts[k]
            .iter()
            .enumerate()
            .map(|(b, &c)| {
                let px = LEFT + ((b as f64 + 0.5) / end_s).min(1.0) * pw;
                let py = TP_TOP + TP_H - c as f64 / max_tp * TP_H;
                format!("{px:.1},{py:.1}")
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
            color(*outcome),
            pts.join(" ")
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">throughput (completions per second)</text>"#,
        TP_TOP + TP_H + 28.0
    );

    // Latency scatter, log scale 1 ms .. 10 s.
    let (lo, hi) = (0.0f64, 4.0f64); // log10 ms
    let ly = |ms: f64| {
        LAT_TOP + LAT_H - ((ms.max(1.0).log10() - lo) / (hi - lo)).clamp(0.0, 1.0) * LAT_H
    };
    let ticks: Vec<(f64, String)> = [1.0f64, 10.0, 100.0, 1000.0, 10000.0]
        .iter()
        .map(|&ms| (ms.log10() / hi, format!("{ms} ms")))
        .collect();
    axis(&mut s, LAT_TOP, LAT_H, "latency", &ticks, end_s, pw);
    let step = (client_ops.len() / MAX_POINTS).max(1);
    for o in client_ops.iter().step_by(step) {
        let Some(c) = &o.complete else { continue };
        let ms = (c.time_ns.saturating_sub(o.inv_ns)) as f64 / 1e6;
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="{}" fill-opacity="0.6"/>"#,
            x(o.inv_ns),
            ly(ms),
            color(o.outcome)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">latency of each operation by invocation time (log scale)</text>"#,
        LAT_TOP + LAT_H + 32.0
    );
    // Legend.
    let mut lx = LEFT;
    for (label, o) in [
        ("ok", Outcome::Ok),
        ("fail", Outcome::Fail),
        ("info (unknown)", Outcome::Info),
    ] {
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="32" width="10" height="10" fill="{}"/>"#,
            color(o)
        );
        let _ = writeln!(s, r#"<text x="{}" y="41">{label}</text>"#, lx + 14.0);
        lx += if label.starts_with("info") {
            130.0
        } else {
            60.0
        };
    }
    s.push_str("</svg>\n");
    s
}

fn axis(
    s: &mut String,
    top: f64,
    h: f64,
    label: &str,
    yticks: &[(f64, String)],
    end_s: f64,
    pw: f64,
) {
    let bottom = top + h;
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="black"/>"#,
        LEFT + pw
    );
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{bottom}" stroke="black"/>"#
    );
    for (frac, text) in yticks {
        let y = bottom - frac * h;
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/>"##,
            LEFT,
            LEFT + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end" font-size="10">{}</text>"#,
            LEFT - 4.0,
            y + 3.0,
            esc(text)
        );
    }
    let step = [1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]
        .into_iter()
        .find(|st| end_s / st <= 15.0)
        .unwrap_or(600.0);
    let mut t = 0.0;
    while t <= end_s {
        let px = LEFT + t / end_s * pw;
        let _ = writeln!(
            s,
            r#"<text x="{px:.1}" y="{}" text-anchor="middle" font-size="10">{t:.0}s</text>"#,
            bottom + 12.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{label}</text>"#,
        top + h / 2.0,
        top + h / 2.0
    );
}
