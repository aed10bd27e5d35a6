//! Pillow's RGB resize reimplemented bit for bit (`processor::resize_rgb8`), against Pillow 13
//! on images of many shapes (`tests/fixtures/florence2_text/resize_pillow.safetensors`, made by
//! `scripts/generate_resize_fixtures.py`), both pass orders included.

mod common;

use std::collections::BTreeMap;

use common::florence2_fixtures;
use fedvlm::models::florence2::processor::{PassOrder, Resample, resize_rgb8, resize_rgb8_ordered};

struct Case {
    src: (usize, usize),
    dst: (usize, usize),
    filter: Resample,
    expected: Vec<u8>,
}

fn dims(s: &str) -> (usize, usize) {
    let (w, h) = s.split_once('x').expect("WxH");
    (w.parse().expect("width"), h.parse().expect("height"))
}

/// Source images by `(width, height)`.
type Sources = BTreeMap<(usize, usize), Vec<u8>>;

/// The sources and every resize case of the fixture.
fn fixture() -> (Sources, Vec<Case>) {
    let path = florence2_fixtures()
        .parent()
        .expect("fixtures folder")
        .join("florence2_text/resize_pillow.safetensors");
    let bytes = std::fs::read(&path).expect("fixture");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut sources = BTreeMap::new();
    let mut cases = Vec::new();
    for (name, view) in file.tensors() {
        let data = view.data().to_vec();
        let parts: Vec<&str> = name.split('_').collect();
        match parts.as_slice() {
            ["src", size] => {
                sources.insert(dims(size), data);
            }
            ["out", src, dst, filter] => cases.push(Case {
                src: dims(src),
                dst: dims(dst),
                filter: match *filter {
                    "bicubic" => Resample::Bicubic,
                    "bilinear" => Resample::Bilinear,
                    other => panic!("filter {other}"),
                },
                expected: data,
            }),
            _ => panic!("unexpected array {name}"),
        }
    }
    (sources, cases)
}

#[test]
fn every_shape_matches_pillow_13_byte_for_byte() {
    let (sources, cases) = fixture();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    let (mut vertical, mut horizontal) = (0, 0);
    for case in &cases {
        let src = &sources[&case.src];
        let (w, h) = case.src;
        let (nw, nh) = case.dst;
        let out = resize_rgb8(src, w, h, nw, nh, case.filter);
        assert_eq!(out.len(), case.expected.len());
        let wrong = out
            .iter()
            .zip(&case.expected)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            wrong, 0,
            "{w}x{h} -> {nw}x{nh} {:?}: {wrong} bytes differ",
            case.filter
        );
        if PassOrder::Pillow13.vertical_first(w, h, nw, nh) {
            vertical += 1;
        } else {
            horizontal += 1;
        }
    }
    // Both of Pillow 13's pass orders are exercised.
    assert!(
        vertical >= 4 && horizontal >= 4,
        "{vertical} / {horizontal}"
    );
}

#[test]
fn pillow_12_s_horizontal_first_order_differs_where_pillow_13_goes_vertical_first() {
    let (sources, cases) = fixture();
    let mut differing = 0;
    for case in &cases {
        let (w, h) = case.src;
        let (nw, nh) = case.dst;
        let old = resize_rgb8_ordered(
            &sources[&case.src],
            case.src,
            case.dst,
            case.filter,
            PassOrder::HorizontalFirst,
        );
        if PassOrder::Pillow13.vertical_first(w, h, nw, nh) {
            differing += usize::from(old != case.expected);
        } else {
            assert_eq!(old, case.expected, "{w}x{h} -> {nw}x{nh}");
        }
    }
    assert!(differing > 0, "the pass order never mattered");
}

#[test]
fn the_pass_order_rule_is_pillow_13_s() {
    let rule = |w, h, nw, nh| PassOrder::Pillow13.vertical_first(w, h, nw, nh);
    // The height shrinks by more than twice as many pixels as the width.
    assert!(rule(389, 871, 768, 768));
    assert!(rule(100, 300, 80, 100));
    assert!(!rule(100, 300, 20, 141)); // 159 > 160 fails
    assert!(rule(100, 300, 20, 139)); // 161 > 160
    // Not when the height grows or stays.
    assert!(!rule(30, 20, 10, 64));
    assert!(!rule(30, 20, 10, 20));
    assert!(!PassOrder::HorizontalFirst.vertical_first(389, 871, 768, 768));
}
