//! Exports of round reports for people: a CSV table and an SVG chart of mean personalised test
//! accuracy and loss per round, one line per run (sharing rule).

use std::fmt::Write as _;
use std::path::Path;

use super::report::RoundReport;
use crate::error::{FedError, Result};

/// One run's reports under a label (usually the sharing rule's name).
#[derive(Debug, Clone, Copy)]
pub struct LabelledRun<'a> {
    /// The legend label.
    pub label: &'a str,
    /// The run's reports in round order.
    pub reports: &'a [RoundReport],
}

/// What the reports' accuracy, precision, recall and F1 measure: the names the CSV columns and
/// the chart use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricNames {
    /// Classification of whole examples: `accuracy`, `precision`, ...
    #[default]
    Classification,
    /// Teacher-forced next-token agreement of a sequence model: `token_accuracy`,
    /// `token_precision`, ... (not the accuracy of generated answers).
    Token,
}

impl MetricNames {
    /// `""` or `"token_"`, before `accuracy` etc. in CSV column names.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Classification => "",
            Self::Token => "token_",
        }
    }

    /// `"accuracy"` or `"token accuracy"`, for people.
    pub fn accuracy_label(self) -> &'static str {
        match self {
            Self::Classification => "accuracy",
            Self::Token => "token accuracy",
        }
    }
}

/// Writes one row per (run, round): mean test accuracy, precision, recall, F1 and loss over
/// clients, mean global-test accuracy, bytes sent and received, seconds.
pub fn write_csv(path: impl AsRef<Path>, runs: &[LabelledRun<'_>]) -> Result<()> {
    write_csv_named(path, runs, MetricNames::Classification)
}

/// [`write_csv`] with the metric columns named per `names` (e.g. `mean_test_token_accuracy`).
pub fn write_csv_named(
    path: impl AsRef<Path>,
    runs: &[LabelledRun<'_>],
    names: MetricNames,
) -> Result<()> {
    let p = names.prefix();
    let mut out = format!(
        "run,round,mean_test_{p}accuracy,mean_test_{p}precision,mean_test_{p}recall,\
         mean_test_{p}f1,mean_test_loss,mean_global_{p}accuracy,mean_train_loss,bytes_up,\
         bytes_down,seconds\n",
    );
    for run in runs {
        for r in run.reports {
            let m = r.mean_test;
            let field = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
            let trained: Vec<f64> = r.clients.iter().filter_map(|c| c.train_loss).collect();
            let train =
                (!trained.is_empty()).then(|| trained.iter().sum::<f64>() / trained.len() as f64);
            let up: usize = r.clients.iter().map(|c| c.bytes_up).sum();
            let down: usize = r.clients.iter().map(|c| c.bytes_down).sum();
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{:.3}",
                run.label,
                r.round,
                field(m.map(|m| m.accuracy)),
                field(m.map(|m| m.precision)),
                field(m.map(|m| m.recall)),
                field(m.map(|m| m.f1)),
                field(m.map(|m| m.loss)),
                field(r.mean_global_test.map(|m| m.accuracy)),
                field(train),
                up,
                down,
                r.seconds
            );
        }
    }
    let path = path.as_ref();
    std::fs::write(path, out).map_err(|e| FedError::io(path, e))
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// Writes an SVG with two panels, mean personalised test accuracy and mean test loss per round,
/// one coloured line per run (the paper's Figure 4 layout).
pub fn write_svg_chart(
    path: impl AsRef<Path>,
    title: &str,
    runs: &[LabelledRun<'_>],
) -> Result<()> {
    write_svg_chart_named(path, title, runs, MetricNames::Classification)
}

/// [`write_svg_chart`] with the accuracy panel named per `names` (e.g. "mean test token
/// accuracy").
pub fn write_svg_chart_named(
    path: impl AsRef<Path>,
    title: &str,
    runs: &[LabelledRun<'_>],
    names: MetricNames,
) -> Result<()> {
    let accuracy_panel = format!("mean test {}", names.accuracy_label());
    let (panel_w, panel_h, margin) = (420.0, 260.0, 50.0);
    let width = 2.0 * (panel_w + margin) + margin;
    let height = panel_h + 2.0 * margin + 40.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{}</text>"#,
        width / 2.0,
        escape(title)
    );
    type Pick = fn(&RoundReport) -> Option<f64>;
    let panels: [(&str, Pick); 2] = [
        (&accuracy_panel, |r| r.mean_test.map(|m| m.accuracy)),
        ("mean test loss", |r| r.mean_test.map(|m| m.loss)),
    ];
    for (p, (name, pick)) in panels.iter().enumerate() {
        let x0 = margin + p as f64 * (panel_w + margin);
        let y0 = margin;
        let series: Vec<Vec<(f64, f64)>> = runs
            .iter()
            .map(|run| {
                run.reports
                    .iter()
                    .filter_map(|r| {
                        pick(r)
                            .filter(|v| v.is_finite())
                            .map(|v| (r.round as f64, v))
                    })
                    .collect()
            })
            .collect();
        let all: Vec<&(f64, f64)> = series.iter().flatten().collect();
        let (xmax, mut ymin, mut ymax) = all
            .iter()
            .fold((1.0f64, f64::MAX, f64::MIN), |acc, (x, y)| {
                (acc.0.max(*x), acc.1.min(*y), acc.2.max(*y))
            });
        if all.is_empty() {
            (ymin, ymax) = (0.0, 1.0);
        }
        if (ymax - ymin).abs() < 1e-12 {
            ymax = ymin + 1.0;
        }
        let sx = |x: f64| x0 + x / xmax * panel_w;
        let sy = |y: f64| y0 + panel_h - (y - ymin) / (ymax - ymin) * panel_h;
        let _ = writeln!(
            svg,
            r##"<rect x="{x0}" y="{y0}" width="{panel_w}" height="{panel_h}" fill="none" stroke="#888"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{name}</text>"#,
            x0 + panel_w / 2.0,
            y0 - 8.0
        );
        for i in 0..=4 {
            let y = ymin + (ymax - ymin) * i as f64 / 4.0;
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="end">{y:.3}</text>"#,
                x0 - 4.0,
                sy(y) + 4.0
            );
        }
        let step = (xmax / 5.0).ceil().max(1.0);
        let mut x = 0.0;
        while x <= xmax {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle">{x:.0}</text>"#,
                sx(x),
                y0 + panel_h + 16.0
            );
            x += step;
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">round</text>"#,
            x0 + panel_w / 2.0,
            y0 + panel_h + 32.0
        );
        for (s, points) in series.iter().enumerate() {
            let color = COLORS[s % COLORS.len()];
            let coords: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                coords.join(" ")
            );
        }
    }
    for (s, run) in runs.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        let x = margin + s as f64 * 140.0;
        let y = height - 14.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" y1="{}" x2="{}" y2="{}" stroke="{color}" stroke-width="3"/><text x="{}" y="{y}">{}</text>"#,
            y - 4.0,
            x + 20.0,
            y - 4.0,
            x + 26.0,
            escape(run.label)
        );
    }
    svg.push_str("</svg>\n");
    let path = path.as_ref();
    std::fs::write(path, svg).map_err(|e| FedError::io(path, e))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
