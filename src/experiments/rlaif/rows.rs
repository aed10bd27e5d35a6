//! The rows an experiment draws its samples from: RLAIF-V or OK-VQA behind one view, so that
//! [`RlaifData::prepare`](super::RlaifData::prepare) and the rest of the pipeline serve both.

use std::fmt;
use std::str::FromStr;

use image::DynamicImage;

use super::spill::SpilledRows;
use crate::data::{DataError, OKVQA_REPO, OkVqa, OkVqaSample, RLAIF_V_REPO, RlaifV, RlaifVSample};

/// Which dataset an experiment runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VqaDataset {
    /// RLAIF-V (`openbmb/RLAIF-V-Dataset`): clients by source dataset or IID; the target is
    /// the preferred ("chosen") answer.
    #[default]
    RlaifV,
    /// OK-VQA (`lmms-lab/OK-VQA`): one source, so IID clients; the target is the most common
    /// of the ten human answers.
    OkVqa,
}

impl VqaDataset {
    /// The command-line name: `rlaif-v` or `okvqa`.
    pub fn name(self) -> &'static str {
        match self {
            Self::RlaifV => "rlaif-v",
            Self::OkVqa => "okvqa",
        }
    }

    /// The hub dataset the rows are read from by default.
    pub fn hub_repo(self) -> &'static str {
        match self {
            Self::RlaifV => RLAIF_V_REPO,
            Self::OkVqa => OKVQA_REPO,
        }
    }

    /// Whether its clients can only be IID shares (a single source).
    pub fn iid_only(self) -> bool {
        matches!(self, Self::OkVqa)
    }
}

impl fmt::Display for VqaDataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for VqaDataset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "rlaif-v" | "rlaifv" | "rlaif" => Ok(Self::RlaifV),
            "okvqa" | "ok-vqa" => Ok(Self::OkVqa),
            other => Err(format!("unknown dataset `{other}` (rlaif-v, okvqa)")),
        }
    }
}

/// The rows of one dataset, read.
#[derive(Debug, Clone, Copy)]
pub enum VqaRows<'a> {
    /// RLAIF-V rows.
    RlaifV(&'a RlaifV),
    /// OK-VQA rows.
    OkVqa(&'a OkVqa),
    /// Rows of either dataset whose images and text wait in a file (memory does not grow with
    /// their text); [`Self::row`] does not reach them, [`SpilledRows::text`] and
    /// [`SpilledRows::image`] do.
    Spilled(&'a SpilledRows),
}

impl<'a> From<&'a SpilledRows> for VqaRows<'a> {
    fn from(rows: &'a SpilledRows) -> Self {
        Self::Spilled(rows)
    }
}

impl<'a> From<&'a RlaifV> for VqaRows<'a> {
    fn from(rows: &'a RlaifV) -> Self {
        Self::RlaifV(rows)
    }
}

impl<'a> From<&'a OkVqa> for VqaRows<'a> {
    fn from(rows: &'a OkVqa) -> Self {
        Self::OkVqa(rows)
    }
}

impl<'a> VqaRows<'a> {
    /// The dataset.
    pub fn dataset(self) -> VqaDataset {
        match self {
            Self::RlaifV(_) => VqaDataset::RlaifV,
            Self::OkVqa(_) => VqaDataset::OkVqa,
            Self::Spilled(rows) => rows.dataset(),
        }
    }

    /// Number of rows.
    pub fn len(self) -> usize {
        match self {
            Self::RlaifV(rows) => rows.len(),
            Self::OkVqa(rows) => rows.len(),
            Self::Spilled(rows) => rows.len(),
        }
    }

    /// Whether there is no row.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Each row's client key, in row order (RLAIF-V: its source dataset; OK-VQA: one key).
    pub fn source_keys(self) -> Vec<&'a str> {
        match self {
            Self::RlaifV(rows) => rows.source_keys(),
            Self::OkVqa(rows) => rows.source_keys(),
            Self::Spilled(rows) => rows.source_keys(),
        }
    }

    /// Row `index`'s client key, `None` past the end.
    pub fn source(self, index: usize) -> Option<&'a str> {
        match self {
            Self::Spilled(rows) => rows.source(index),
            _ => self.row(index).map(VqaRow::source),
        }
    }

    /// Row `index`, `None` past the end, and always for [`Self::Spilled`] rows (which are
    /// not in memory).
    pub fn row(self, index: usize) -> Option<VqaRow<'a>> {
        match self {
            Self::RlaifV(rows) => rows.samples().get(index).map(VqaRow::RlaifV),
            Self::OkVqa(rows) => rows.samples().get(index).map(VqaRow::OkVqa),
            Self::Spilled(_) => None,
        }
    }
}

/// One row of either dataset.
#[derive(Debug, Clone, Copy)]
pub enum VqaRow<'a> {
    /// An RLAIF-V row.
    RlaifV(&'a RlaifVSample),
    /// An OK-VQA row.
    OkVqa(&'a OkVqaSample),
}

impl<'a> VqaRow<'a> {
    /// The question.
    pub fn question(self) -> &'a str {
        match self {
            Self::RlaifV(s) => &s.question,
            Self::OkVqa(s) => &s.question,
        }
    }

    /// The training target: RLAIF-V's chosen answer, OK-VQA's most common human answer.
    pub fn answer(self) -> &'a str {
        match self {
            Self::RlaifV(s) => &s.chosen,
            Self::OkVqa(s) => &s.answer,
        }
    }

    /// The client key: RLAIF-V's source dataset, [`crate::data::OKVQA_SOURCE`] for OK-VQA.
    pub fn source(self) -> &'a str {
        match self {
            Self::RlaifV(s) => &s.origin_dataset,
            Self::OkVqa(_) => crate::data::OKVQA_SOURCE,
        }
    }

    /// The encoded image.
    pub fn image_bytes(self) -> &'a [u8] {
        match self {
            Self::RlaifV(s) => &s.image_bytes,
            Self::OkVqa(s) => &s.image_bytes,
        }
    }

    /// The human answers (OK-VQA's ten; none for RLAIF-V).
    pub fn human_answers(self) -> &'a [String] {
        match self {
            Self::RlaifV(_) => &[],
            Self::OkVqa(s) => &s.answers,
        }
    }

    /// Decodes the image.
    ///
    /// # Errors
    /// [`DataError::Malformed`] naming the file and row when it does not decode.
    pub fn decode_image(self) -> Result<DynamicImage, DataError> {
        match self {
            Self::RlaifV(s) => s.decode_image(),
            Self::OkVqa(s) => s.decode_image(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::VqaDataset;

    #[test]
    fn dataset_names_round_trip() {
        for d in [VqaDataset::RlaifV, VqaDataset::OkVqa] {
            assert_eq!(d.name().parse::<VqaDataset>(), Ok(d));
        }
        assert_eq!("OK-VQA".parse::<VqaDataset>(), Ok(VqaDataset::OkVqa));
        assert!("coco".parse::<VqaDataset>().is_err());
        assert_eq!(VqaDataset::default(), VqaDataset::RlaifV);
        assert!(VqaDataset::OkVqa.iid_only() && !VqaDataset::RlaifV.iid_only());
    }
}
