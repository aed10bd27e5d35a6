//! Datasets, downloads and preprocessing.

mod error;

pub use error::DataError;
