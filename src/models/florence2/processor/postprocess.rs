//! Generated text to structured answers (boxes, labels, polygons), as transformers'
//! `Florence2Processor.post_process_generation` does.

use std::collections::HashSet;
use std::sync::LazyLock;

use fancy_regex::Regex;

/// Phrases that phrase grounding never reports, the list transformers' conversion script
/// writes into the converted checkpoints' `processor_config.json`.
pub const BANNED_GROUNDING_TOKENS: &[&str] = &[
    "it",
    "I",
    "me",
    "mine",
    "you",
    "your",
    "yours",
    "he",
    "him",
    "his",
    "she",
    "her",
    "hers",
    "they",
    "them",
    "their",
    "theirs",
    "one",
    "oneself",
    "we",
    "us",
    "our",
    "ours",
    "its",
    "myself",
    "yourself",
    "himself",
    "herself",
    "itself",
    "ourselves",
    "yourselves",
    "themselves",
    "this",
    "that",
    "these",
    "those",
    "who",
    "whom",
    "whose",
    "which",
    "what",
    "all",
    "another",
    "any",
    "anybody",
    "anyone",
    "anything",
    "each",
    "everybody",
    "everyone",
    "everything",
    "few",
    "many",
    "nobody",
    "none",
    "several",
    "some",
    "somebody",
    "someone",
    "something",
    "each other",
    "one another",
    "the image",
    "image",
    "images",
    "the",
    "a",
    "an",
    "a group",
    "other objects",
    "lots",
    "a set",
];

/// A structured answer, one variant per post-processing kind of transformers. Coordinates are
/// pixels of the original image, integers as transformers returns them (bin centre, truncated).
#[derive(Debug, Clone, PartialEq)]
pub enum Florence2Answer {
    /// Captions, OCR, region descriptions: the text without `<s>`/`</s>`, stripped.
    Text(String),
    /// Object detection, dense region captions, region proposals, phrase grounding:
    /// `[x_min, y_min, x_max, y_max]` boxes and one label per box.
    Boxes {
        /// The boxes.
        bboxes: Vec<[i32; 4]>,
        /// One label per box (empty for region proposals).
        labels: Vec<String>,
    },
    /// OCR with regions: quadrilaterals `[x1, y1, .., x4, y4]` and their text.
    QuadBoxes {
        /// The quadrilaterals.
        quad_boxes: Vec<[i32; 8]>,
        /// One text per quadrilateral.
        labels: Vec<String>,
    },
    /// Segmentation: per instance, a list of polygons `[x1, y1, x2, y2, ..]`.
    Polygons {
        /// The polygons of each instance.
        polygons: Vec<Vec<Vec<i32>>>,
        /// One label per instance.
        labels: Vec<String>,
    },
    /// Open-vocabulary detection: boxes, or polygons when the text has `<poly>`.
    BoxesOrPolygons {
        /// The boxes.
        bboxes: Vec<[i32; 4]>,
        /// One label per box.
        bboxes_labels: Vec<String>,
        /// The polygons of each polygon instance.
        polygons: Vec<Vec<Vec<i32>>>,
        /// One label per polygon instance.
        polygons_labels: Vec<String>,
    },
}

/// The post-processing kind of a task (`pure_text` for unknown tasks), as transformers names it.
pub fn post_processing_kind(task: &str) -> &'static str {
    match task {
        "<OCR_WITH_REGION>" => "ocr",
        "<OD>" | "<DENSE_REGION_CAPTION>" => "description_with_bboxes",
        "<CAPTION_TO_PHRASE_GROUNDING>" => "phrase_grounding",
        "<REFERRING_EXPRESSION_SEGMENTATION>" | "<REGION_TO_SEGMENTATION>" => "polygons",
        "<OPEN_VOCABULARY_DETECTION>" => "description_with_bboxes_or_polygons",
        "<REGION_PROPOSAL>" => "bboxes",
        _ => "pure_text",
    }
}

fn re(pattern: &str) -> Regex {
    // The patterns are constants of this file: a failure is a bug caught by the tests.
    Regex::new(pattern).unwrap_or_else(|e| unreachable!("bad pattern {pattern}: {e}"))
}

static PHRASE_WITH_BOXES: LazyLock<Regex> = LazyLock::new(|| re(r"([^<]+(?:<loc_[0-9]+>){4,})"));
static EMPTY_PHRASE_WITH_BOXES: LazyLock<Regex> = LazyLock::new(|| re(r"(?:(?:<loc_[0-9]+>){4,})"));
static PHRASE_TEXT: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_)"));
static BOX: LazyLock<Regex> =
    LazyLock::new(|| re(r"<loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)>"));
static OCR: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(.+?)<loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)>",
    )
});
static POLY_PHRASE: LazyLock<Regex> =
    LazyLock::new(|| re(r"([^<]+(?:<loc_[0-9]+>|<sep>|<poly>|</poly>){4,})"));
static POLY_EMPTY_PHRASE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:(?:<loc_[0-9]+>|<sep>|<poly>|</poly>){4,})"));
static POLY_PHRASE_TEXT: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_|<poly>)"));
static POLY_INSTANCE: LazyLock<Regex> = LazyLock::new(|| re(r"<poly>(.*?)</poly>"));
static POLY_BOX: LazyLock<Regex> = LazyLock::new(|| re(r"((?:<loc_[0-9]+>)+)(?:<sep>|$)"));
static LOC: LazyLock<Regex> = LazyLock::new(|| re(r"<loc_([0-9]+)>"));
static LEADING_LOC: LazyLock<Regex> = LazyLock::new(|| re(r"^<loc_[0-9]+>"));

/// Python's `str.strip()`.
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

fn clean(text: &str) -> String {
    text.replace("<s>", "")
        .replace("</s>", "")
        .replace("<pad>", "")
}

/// All matches of `re` in `text`: group 1 when the pattern has a group, else the match.
fn find_all(re: &Regex, text: &str) -> Vec<String> {
    re.captures_iter(text)
        .filter_map(Result::ok)
        .filter_map(|c| {
            c.get(1)
                .or_else(|| c.get(0))
                .map(|m| m.as_str().to_string())
        })
        .collect()
}

fn bins(caps: &fancy_regex::Captures<'_>, n: usize) -> Vec<i64> {
    (1..=n)
        .map(|i| {
            caps.get(i)
                .and_then(|m| m.as_str().parse::<i64>().ok())
                .unwrap_or(i64::MAX)
        })
        .collect()
}

/// transformers' `dequantize`: the centre of the bin, `(bin + 0.5) * size / 1000` computed in
/// float32, truncated to an integer.
fn dequantize(bin: i64, size: u32) -> i32 {
    let per_bin = (f64::from(size) / 1000.0) as f32;
    ((bin as f32 + 0.5) * per_bin) as i32
}

fn dequantize_xy(bins: &[i64], width: u32, height: u32) -> Vec<i32> {
    bins.iter()
        .enumerate()
        .map(|(i, &b)| dequantize(b, if i % 2 == 0 { width } else { height }))
        .collect()
}

fn ascii_only(s: &str) -> String {
    s.chars().filter(char::is_ascii).collect()
}

/// The phrase before the first box marker, or `None` when the pattern finds none.
fn phrase_text(re: &Regex, text: &str) -> Option<String> {
    re.find(text)
        .ok()
        .flatten()
        .map(|m| py_strip(m.as_str()).to_string())
}

/// Post-processes generated text (decoded with special tokens kept).
#[derive(Debug, Clone)]
pub struct PostProcessor {
    /// Phrases phrase grounding drops.
    pub banned_grounding_tokens: HashSet<String>,
}

impl Default for PostProcessor {
    fn default() -> Self {
        Self {
            banned_grounding_tokens: BANNED_GROUNDING_TOKENS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

struct Instance {
    label: String,
    bboxes: Vec<[i32; 4]>,
    polygons: Option<Vec<Vec<i32>>>,
}

impl PostProcessor {
    /// Parses `text` (the decoded generation, special tokens kept) for `task` on an image of
    /// `image_size = (width, height)` pixels, as `post_process_generation(text, task, image_size)`.
    pub fn process(&self, text: &str, task: &str, image_size: (u32, u32)) -> Florence2Answer {
        let (w, h) = image_size;
        match post_processing_kind(task) {
            "description_with_bboxes" => boxes(self.with_bboxes(text, w, h, false)),
            "bboxes" => boxes(self.with_bboxes(text, w, h, true)),
            "phrase_grounding" => boxes(self.phrase_grounding(text, w, h)),
            "ocr" => {
                let cleaned = clean(text);
                let mut quad_boxes = Vec::new();
                let mut labels = Vec::new();
                for caps in OCR.captures_iter(&cleaned).filter_map(Result::ok) {
                    let q = dequantize_xy(&bins(&caps, 9)[1..], w, h);
                    let mut quad = [0i32; 8];
                    quad.copy_from_slice(&q);
                    quad_boxes.push(quad);
                    let content = caps.get(1).map_or("", |m| m.as_str());
                    labels.push(py_strip(content).to_string());
                }
                Florence2Answer::QuadBoxes { quad_boxes, labels }
            }
            "polygons" => {
                let mut polygons = Vec::new();
                let mut labels = Vec::new();
                for inst in self.with_polygons(text, w, h, true) {
                    polygons.push(inst.polygons.unwrap_or_default());
                    labels.push(inst.label);
                }
                Florence2Answer::Polygons { polygons, labels }
            }
            "description_with_bboxes_or_polygons" => {
                let instances = if text.contains("<poly>") {
                    self.with_polygons(text, w, h, false)
                } else {
                    self.with_bboxes(text, w, h, false)
                };
                let (mut bboxes, mut bboxes_labels) = (Vec::new(), Vec::new());
                let (mut polygons, mut polygons_labels) = (Vec::new(), Vec::new());
                for inst in instances {
                    match inst.polygons {
                        Some(p) => {
                            polygons.push(p);
                            polygons_labels.push(inst.label);
                        }
                        None => {
                            for b in inst.bboxes {
                                bboxes.push(b);
                                bboxes_labels.push(inst.label.clone());
                            }
                        }
                    }
                }
                Florence2Answer::BoxesOrPolygons {
                    bboxes,
                    bboxes_labels,
                    polygons,
                    polygons_labels,
                }
            }
            _ => Florence2Answer::Text(
                py_strip(&text.replace("<s>", "").replace("</s>", "")).to_string(),
            ),
        }
    }

    fn boxes_of(text: &str, w: u32, h: u32) -> Vec<[i32; 4]> {
        BOX.captures_iter(text)
            .filter_map(Result::ok)
            .map(|caps| {
                let b = dequantize_xy(&bins(&caps, 4), w, h);
                [b[0], b[1], b[2], b[3]]
            })
            .collect()
    }

    fn with_bboxes(&self, text: &str, w: u32, h: u32, allow_empty: bool) -> Vec<Instance> {
        let pattern: &Regex = if allow_empty {
            &EMPTY_PHRASE_WITH_BOXES
        } else {
            &PHRASE_WITH_BOXES
        };
        let mut out = Vec::new();
        for phrase in find_all(pattern, &clean(text)) {
            let phrase = phrase.replacen("<ground>", "", 1).replacen("<obj>", "", 1);
            if phrase.is_empty() && !allow_empty {
                continue;
            }
            let Some(label) = phrase_text(&PHRASE_TEXT, &phrase) else {
                continue;
            };
            let bboxes = Self::boxes_of(&phrase, w, h);
            if bboxes.is_empty() {
                continue;
            }
            out.push(Instance {
                label: ascii_only(&label),
                bboxes,
                polygons: None,
            });
        }
        out
    }

    fn phrase_grounding(&self, text: &str, w: u32, h: u32) -> Vec<Instance> {
        let mut out = Vec::new();
        for phrase in find_all(&PHRASE_WITH_BOXES, &clean(text)) {
            let phrase = phrase.replacen("<ground>", "", 1).replacen("<obj>", "", 1);
            if phrase.is_empty() {
                continue;
            }
            let Some(label) = phrase_text(&PHRASE_TEXT, &phrase) else {
                continue;
            };
            if self.banned_grounding_tokens.contains(&label) {
                continue;
            }
            let bboxes = Self::boxes_of(&phrase, w, h);
            if bboxes.is_empty() {
                continue;
            }
            out.push(Instance {
                label: ascii_only(&label),
                bboxes,
                polygons: None,
            });
        }
        out
    }

    fn with_polygons(&self, text: &str, w: u32, h: u32, allow_empty: bool) -> Vec<Instance> {
        let pattern: &Regex = if allow_empty {
            &POLY_EMPTY_PHRASE
        } else {
            &POLY_PHRASE
        };
        let mut out = Vec::new();
        for phrase in find_all(pattern, &clean(text)) {
            let stripped = LEADING_LOC.replace(&phrase, "").into_owned();
            if stripped.is_empty() && !allow_empty {
                continue;
            }
            let Some(label) = phrase_text(&POLY_PHRASE_TEXT, &stripped) else {
                continue;
            };
            let instances = if phrase.contains("<poly>") && phrase.contains("</poly>") {
                find_all(&POLY_INSTANCE, &phrase)
            } else {
                vec![phrase.clone()]
            };
            for inst in instances {
                let mut polygons = Vec::new();
                for caps in POLY_BOX.captures_iter(&inst).filter_map(Result::ok) {
                    let locs = caps.get(1).map_or("", |m| m.as_str());
                    let mut b: Vec<i64> = LOC
                        .captures_iter(locs)
                        .filter_map(Result::ok)
                        .map(|c| bins(&c, 1)[0])
                        .collect();
                    if b.len() % 2 == 1 {
                        b.pop();
                    }
                    polygons.push(dequantize_xy(&b, w, h));
                }
                if polygons.is_empty() {
                    continue;
                }
                out.push(Instance {
                    label: label.clone(),
                    bboxes: Vec::new(),
                    polygons: Some(polygons),
                });
            }
        }
        out
    }
}

fn boxes(instances: Vec<Instance>) -> Florence2Answer {
    let mut bboxes = Vec::new();
    let mut labels = Vec::new();
    for inst in instances {
        for b in inst.bboxes {
            bboxes.push(b);
            labels.push(inst.label.clone());
        }
    }
    Florence2Answer::Boxes { bboxes, labels }
}
