//! OK-VQA (`lmms-lab/OK-VQA`, the `val2014` split in parquet): the reader, the training target
//! and IID client partitions.
//!
//! * [`OkVqaFiles`]: the `val2014-*.parquet` files of a local folder (directly inside it, or
//!   in its `data/` sub-folder as in the hub repository), or of the hub dataset [`OKVQA_REPO`]
//!   through the Hugging Face cache (downloaded when online; offline, `HF_HUB_OFFLINE=1`, only
//!   the cache is read).
//! * [`OkVqa::load`] / [`read_okvqa`]: reads the files in name order, row group by row group,
//!   decoding only `question`, `answers` (a list of strings), the `image` struct's `bytes`
//!   and, when present, `question_id`, `question_type` and `answer_type`. Malformed rows are
//!   skipped and counted per [`OkVqaSkip`] reason (missing or undecodable image, blank
//!   question, no answers, another number of answers than ten, a blank answer), or abort
//!   with [`OkVqaOptions::strict`].
//! * The training target of a question is its most common human answer
//!   ([`majority_answer`]: compared after trimming, ties to the answer seen first); the ten
//!   answers stay in [`OkVqaSample::answers`] for VQA accuracy.
//! * [`partition_okvqa`]: IID clients with per-client train/test splits (the paper's
//!   Figure 2a setting).
//!
//! ```no_run
//! use fedvlm::data::{
//!     OKVQA_REPO, OkVqa, OkVqaFiles, OkVqaOptions, RlaifVPartitionOptions, RlaifVScheme,
//!     partition_okvqa,
//! };
//!
//! let files = OkVqaFiles::resolve(OKVQA_REPO)?;
//! let data = OkVqa::load_files(&files.files, &OkVqaOptions::new())?;
//! println!("{}", data.summary());
//! let clients = partition_okvqa(
//!     &data,
//!     &RlaifVPartitionOptions::new(RlaifVScheme::Iid { num_clients: 4, seed: 42 }),
//! )?;
//! let first = &data.samples()[clients[0].train[0]];
//! println!("{} -> {} (of {:?})", first.question, first.answer, first.answers);
//! # Ok::<(), fedvlm::FedError>(())
//! ```

mod hub;
mod reader;
mod sample;
mod schema;

pub use hub::{OKVQA_REPO, OkVqaFiles, OkVqaSource};
pub use reader::{
    OKVQA_ANSWER_TYPE_COLUMN, OKVQA_ANSWERS_COLUMN, OKVQA_DATA_FOLDER, OKVQA_FILE_PATTERN,
    OKVQA_FILE_PREFIX, OKVQA_FILE_SUFFIX, OKVQA_IMAGE_COLUMN, OKVQA_QUESTION_COLUMN,
    OKVQA_QUESTION_ID_COLUMN, OKVQA_QUESTION_TYPE_COLUMN, OKVQA_SPLIT, OkVqa, is_okvqa_file,
    okvqa_files, partition_okvqa, read_okvqa,
};
pub use sample::{
    OKVQA_ANSWERS_PER_QUESTION, OKVQA_SOURCE, OkVqaOptions, OkVqaSample, OkVqaSkip, OkVqaSummary,
    majority_answer,
};
