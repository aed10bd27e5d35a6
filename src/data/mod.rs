//! Datasets, downloads and preprocessing.
//!
//! * [`Cifar10`]: the CIFAR-10 binary version (reader, downloader, [`write_cifar_bin`] for
//!   synthetic files in the real format).
//! * [`download_file`] / [`Downloader`]: cached, checksummed, resumable-by-rename downloads
//!   with an offline switch (`FEDVLM_OFFLINE=1` or `HF_HUB_OFFLINE=1`); [`cache_dir`],
//!   [`torch_hub_checkpoints_dir`]; [`extract_tar_gz`] with path-traversal protection.
//! * [`ImageTransform`]: `u8` CHW images to normalised `f32` tensors (bilinear resize as
//!   PyTorch's `align_corners=False`, random crop and flip for training);
//!   [`to_tensor_batch`] builds a `[N, 3, S, S]` burn tensor from CIFAR-10 indices.
//! * [`RlaifV`]: the RLAIF-V parquet shards ([`RlaifVShards`] finds them locally or on the
//!   hub), malformed rows skipped and counted; [`partition_rlaif_v`] deals them to clients by
//!   source dataset or IID, with per-client train/test splits.
//! * [`OkVqa`]: OK-VQA's parquet files (`lmms-lab/OK-VQA`, found by [`OkVqaFiles`]), the ten
//!   human answers per question and their most common one as the training target;
//!   [`partition_okvqa`] deals them to IID clients.
//!
//! ```no_run
//! use burn::backend::Flex;
//! use fedvlm::data::{Cifar10, ImageTransform, cache_dir, to_tensor_batch};
//!
//! let cifar = Cifar10::load_or_download(&cache_dir(), true)?;
//! let labels = cifar.train().labels_usize();          // for the partitioners
//! let x = to_tensor_batch::<Flex>(cifar.test(), &[0, 1, 2], &ImageTransform::imagenet(96),
//!                                 None, &Default::default())?;
//! assert_eq!(x.dims(), [3, 3, 96, 96]);
//! # Ok::<(), fedvlm::data::DataError>(())
//! ```

mod cifar10;
mod download;
mod error;
mod hub_files;
mod image;
pub mod okvqa;
pub mod rlaif_v;

pub use cifar10::{
    CIFAR10_CLASSES, CIFAR10_FILE_BYTES, CIFAR10_IMAGE_BYTES, CIFAR10_RECORD_BYTES,
    CIFAR10_RECORDS_PER_FILE, CIFAR10_SIDE, Cifar10, Cifar10Split, write_cifar_bin,
};
pub use download::{
    Checksum, Downloader, OFFLINE_ENV_VARS, cache_dir, download_file, extract_tar_gz, is_offline,
    sha256_file, torch_hub_checkpoints_dir,
};
pub use error::DataError;
pub use hub_files::DatasetSource;
pub use image::{Augmentation, IMAGENET_MEAN, IMAGENET_STD, ImageTransform, to_tensor_batch};
pub use okvqa::{
    OKVQA_ANSWERS_PER_QUESTION, OKVQA_REPO, OKVQA_SOURCE, OkVqa, OkVqaFiles, OkVqaOptions,
    OkVqaSample, OkVqaSkip, OkVqaSource, OkVqaSummary, is_okvqa_file, majority_answer, okvqa_files,
    partition_okvqa, read_okvqa,
};
pub use rlaif_v::{
    CHOSEN_COLUMN, IMAGE_BYTES_FIELD, IMAGE_COLUMN, ImageCheck, ORIGIN_COLUMN, QUESTION_COLUMN,
    RLAIF_V_REPO, RLAIF_V_SHARD_PATTERN, RLAIF_V_SHARD_PREFIX, RLAIF_V_SHARD_SUFFIX, RlaifV,
    RlaifVClient, RlaifVOptions, RlaifVPartitionOptions, RlaifVSample, RlaifVScheme, RlaifVShards,
    RlaifVSkip, RlaifVSource, RlaifVSummary, is_rlaif_v_shard, partition_by_source_keys,
    partition_rlaif_v, read_rlaif_v, rlaif_v_shards,
};
