//! RLAIF-V (`openbmb/RLAIF-V-Dataset`): the parquet shard reader and its federated partitions.
//!
//! * [`RlaifVShards`]: the `RLAIF-V-Dataset_*.parquet` shards of a local folder, or of the hub
//!   dataset [`RLAIF_V_REPO`] through the Hugging Face cache (downloaded with a progress bar
//!   when online; offline, `HF_HUB_OFFLINE=1`, only the cache is read). Same
//!   [`HubOptions`](crate::models::florence2::hub::HubOptions) as the Florence-2 checkpoints.
//! * [`RlaifV::load`] / [`read_rlaif_v`]: reads the shards in file-name order, row group by
//!   row group, decoding only the `question`, `chosen`, `origin_dataset` and `image` columns
//!   (the image struct's `bytes` field) with the `parquet` crate's record reader. Malformed
//!   rows are skipped and counted per [`RlaifVSkip`] reason, or abort with
//!   [`RlaifVOptions::strict`]; [`RlaifVOptions::max_samples`] and
//!   [`RlaifVOptions::max_samples_per_source`] cut quick runs short. The shards are not
//!   shuffled, so a per-source cap keeps each source's first rows unless
//!   [`RlaifVOptions::sample_seed`] is set: then each source keeps a seeded uniform random
//!   sample of its rows (reservoir sampling, bounded memory, images checked only for rows
//!   drawn), still in file order. The distinct source datasets are whatever `origin_dataset`
//!   values the shards hold ([`RlaifVSummary`]).
//!   Images stay encoded in [`RlaifVSample::image_bytes`] (checked per [`ImageCheck`]) and
//!   are decoded on demand with [`RlaifVSample::decode_image`].
//! * [`partition_rlaif_v`]: clients by source dataset (one per source, or grouped to a
//!   client count), or IID; each client split into train and test, with an optional
//!   per-client cap.
//!
//! ```no_run
//! use fedvlm::data::{
//!     RlaifV, RlaifVOptions, RlaifVPartitionOptions, RlaifVScheme, RlaifVShards,
//!     partition_rlaif_v,
//! };
//!
//! // A folder with the shards, or the hub id "openbmb/RLAIF-V-Dataset".
//! let shards = RlaifVShards::resolve("openbmb/RLAIF-V-Dataset")?;
//! let options = RlaifVOptions::new().max_samples_per_source(500).sample_seed(42);
//! let data = RlaifV::load_files(&shards.files, &options)?;
//! println!("{}", data.summary());
//! let clients = partition_rlaif_v(
//!     &data,
//!     &RlaifVPartitionOptions::new(RlaifVScheme::GroupedBySource { num_clients: 4 })
//!         .test_fraction(0.2)
//!         .seed(42),
//! )?;
//! let first = &data.samples()[clients[0].train[0]];
//! let image = first.decode_image()?;
//! println!("{} -> {} ({}x{})", first.question, first.chosen, image.width(), image.height());
//! # Ok::<(), fedvlm::FedError>(())
//! ```

mod hub;
mod keeper;
mod parquet_guard;
mod partition;
mod reader;
mod reservoir;
mod sample;
mod schema;

pub use hub::{RLAIF_V_REPO, RlaifVShards, RlaifVSource};
// Shared with the OK-VQA reader (same hub layout, same hostile-parquet guards).
pub(crate) use parquet_guard::{check_column_chunks, parquet_call, parquet_step};
pub use partition::{
    RlaifVClient, RlaifVPartitionOptions, RlaifVScheme, partition_by_source_keys, partition_rlaif_v,
};
pub use reader::{
    CHOSEN_COLUMN, IMAGE_BYTES_FIELD, IMAGE_COLUMN, ORIGIN_COLUMN, QUESTION_COLUMN,
    RLAIF_V_SHARD_PATTERN, RLAIF_V_SHARD_PREFIX, RLAIF_V_SHARD_SUFFIX, RlaifV, is_rlaif_v_shard,
    read_rlaif_v, rlaif_v_shards,
};
pub use sample::{ImageCheck, RlaifVOptions, RlaifVSample, RlaifVSkip, RlaifVSummary};
pub(crate) use sample::{decode_image, image_dimensions};
