//! Which images each client trains and is scored on.

use crate::data::Cifar10;
use crate::error::Result;
use crate::partition::label_shards;

/// Per-client indices into CIFAR-10's training and test splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSplit {
    /// Training images of each client (indices into the training split).
    pub train: Vec<Vec<usize>>,
    /// Test images of each client's own classes (indices into the test split): the
    /// personalised figure the paper reports.
    pub test: Vec<Vec<usize>>,
    /// Every test image (the global test set).
    pub global_test: Vec<usize>,
    /// The classes each client holds.
    pub classes: Vec<Vec<usize>>,
}

impl ClientSplit {
    /// Label-sorted shards of the first `train_limit` training images (McMahan et al.), and for
    /// each client the first `test_limit` test images whose label is one of its classes.
    pub fn new(
        data: &Cifar10,
        shards: usize,
        clients: usize,
        train_limit: Option<usize>,
        test_limit: Option<usize>,
        seed: u64,
    ) -> Result<Self> {
        let train_labels = data.train().labels_usize();
        let n_train = train_limit.map_or(train_labels.len(), |n| n.min(train_labels.len()));
        let train = label_shards(
            &train_labels[..n_train],
            shards,
            shards / clients.max(1),
            seed,
        )?;
        let test_labels = data.test().labels_usize();
        let n_test = test_limit.map_or(test_labels.len(), |n| n.min(test_labels.len()));
        let global_test: Vec<usize> = (0..n_test).collect();
        let classes: Vec<Vec<usize>> = train
            .iter()
            .map(|indices| {
                let mut classes: Vec<usize> = indices.iter().map(|&i| train_labels[i]).collect();
                classes.sort_unstable();
                classes.dedup();
                classes
            })
            .collect();
        let test = classes
            .iter()
            .map(|own| {
                global_test
                    .iter()
                    .copied()
                    .filter(|&i| own.binary_search(&test_labels[i]).is_ok())
                    .collect()
            })
            .collect();
        Ok(Self {
            train,
            test,
            global_test,
            classes,
        })
    }
}
