//! CSV and SVG exports of round reports.

use fedvlm::federated::{
    ClientRoundReport, LabelledRun, MetricNames, RoundReport, write_csv, write_csv_named,
    write_svg_chart, write_svg_chart_named,
};
use fedvlm::metrics::ClassificationMetrics;

fn report(round: u64, accuracy: f64) -> RoundReport {
    let metrics = ClassificationMetrics {
        accuracy,
        precision: accuracy,
        recall: accuracy,
        f1: accuracy,
        loss: 1.0 - accuracy,
        count: 10,
    };
    RoundReport {
        round,
        sharing: "plora".into(),
        strategy: "fedavg".into(),
        sampled: vec![0],
        clients: vec![ClientRoundReport {
            client: 0,
            participated: round > 0,
            train_loss: (round > 0).then_some(0.5),
            train_examples: 10,
            bytes_up: 100,
            bytes_down: 200,
            seconds: 0.1,
            test: Some(metrics),
            global_test: None,
        }],
        rejected: vec![],
        failed: vec![],
        aggregated: true,
        privacy: None,
        mean_test: Some(metrics),
        mean_global_test: None,
        seconds: 0.2,
    }
}

#[test]
fn csv_has_one_row_per_run_and_round_and_svg_one_line_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let a: Vec<_> = (0..3).map(|r| report(r, 0.25 * r as f64)).collect();
    let b: Vec<_> = (0..3).map(|r| report(r, 0.1 * r as f64)).collect();
    let runs = [
        LabelledRun {
            label: "plora",
            reports: &a,
        },
        LabelledRun {
            label: "fedavg-lora",
            reports: &b,
        },
    ];
    write_csv(dir.path().join("r.csv"), &runs).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("r.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 6);
    assert!(lines[0].starts_with("run,round,mean_test_accuracy"));
    assert!(lines[3].starts_with("plora,2,0.5,"), "{}", lines[3]);
    assert!(lines[6].starts_with("fedavg-lora,2,0.2,"), "{}", lines[6]);

    write_svg_chart(dir.path().join("c.svg"), "t <&>", &runs).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("c.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg.matches("<polyline").count(),
        2 * 2,
        "two panels x two runs"
    );
    assert!(svg.contains("t &lt;&amp;&gt;"));
}

#[test]
fn token_metric_names_say_token_in_every_column_and_panel() {
    let dir = tempfile::tempdir().unwrap();
    let a: Vec<_> = (0..2).map(|r| report(r, 0.5)).collect();
    let runs = [LabelledRun {
        label: "plora",
        reports: &a,
    }];
    write_csv_named(dir.path().join("r.csv"), &runs, MetricNames::Token).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("r.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for metric in ["accuracy", "precision", "recall", "f1"] {
        assert!(
            header.contains(&format!("mean_test_token_{metric}").as_str()),
            "{header:?}"
        );
        assert!(!header.contains(&format!("mean_test_{metric}").as_str()));
    }
    assert!(header.contains(&"mean_global_token_accuracy"));
    write_svg_chart_named(dir.path().join("c.svg"), "t", &runs, MetricNames::Token).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("c.svg")).unwrap();
    assert!(svg.contains(">mean test token accuracy<"));
    write_svg_chart(dir.path().join("d.svg"), "t", &runs).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("d.svg")).unwrap();
    assert!(svg.contains(">mean test accuracy<"));
}
