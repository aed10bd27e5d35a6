//! Integration tests for `fedvlm::partition`.

use std::collections::{BTreeMap, BTreeSet};

use fedvlm::partition::{
    PartitionError, by_key, dirichlet, iid, label_shards, pathological, sizes, train_test_split,
};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;

/// Asserts the parts are sorted, pairwise disjoint and together cover `0..n` exactly.
fn assert_exact_cover(parts: &[Vec<usize>], n: usize) {
    let mut seen = vec![false; n];
    for part in parts {
        assert!(
            part.windows(2).all(|w| w[0] < w[1]),
            "part not sorted/unique"
        );
        for &i in part {
            assert!(i < n, "index {i} out of range {n}");
            assert!(!seen[i], "index {i} assigned twice");
            seen[i] = true;
        }
    }
    assert!(seen.iter().all(|&s| s), "some index unassigned");
}

/// `per_class` samples of each of `classes` labels, in a seeded random order.
fn shuffled_labels(classes: usize, per_class: usize, seed: u64) -> Vec<usize> {
    let mut labels: Vec<usize> = (0..classes * per_class).map(|i| i / per_class).collect();
    labels.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    labels
}

fn label_set(labels: &[usize], part: &[usize]) -> BTreeSet<usize> {
    part.iter().map(|&i| labels[i]).collect()
}

// ---------------------------------------------------------------- iid

#[test]
fn iid_is_exact_cover_with_near_equal_sizes() {
    let parts = iid(103, 10, 7).unwrap();
    assert_eq!(parts.len(), 10);
    assert_exact_cover(&parts, 103);
    let s = sizes(&parts);
    assert_eq!(s.iter().sum::<usize>(), 103);
    assert_eq!(s, vec![11, 11, 11, 10, 10, 10, 10, 10, 10, 10]);
}

#[test]
fn iid_is_seeded() {
    assert_eq!(iid(1000, 7, 1).unwrap(), iid(1000, 7, 1).unwrap());
    assert_ne!(iid(1000, 7, 1).unwrap(), iid(1000, 7, 2).unwrap());
}

#[test]
fn iid_one_client_per_sample() {
    let parts = iid(5, 5, 3).unwrap();
    assert_exact_cover(&parts, 5);
    assert!(parts.iter().all(|p| p.len() == 1));
}

#[test]
fn iid_errors() {
    assert!(matches!(iid(10, 0, 0), Err(PartitionError::ZeroClients)));
    assert!(matches!(
        iid(0, 3, 0),
        Err(PartitionError::EmptyInput { .. })
    ));
    assert!(matches!(
        iid(3, 4, 0),
        Err(PartitionError::TooManyClients {
            num_clients: 4,
            num_samples: 3
        })
    ));
}

#[test]
fn error_messages_name_argument_and_value() {
    let msg = iid(3, 4, 0).unwrap_err().to_string();
    assert!(msg.contains("num_clients = 4"), "{msg}");
    let msg = dirichlet(&[0, 1], 2, -0.5, 0, 0).unwrap_err().to_string();
    assert!(msg.contains("alpha") && msg.contains("-0.5"), "{msg}");
    let msg = train_test_split(&[1, 2], 1.5, 0).unwrap_err().to_string();
    assert!(
        msg.contains("test_fraction") && msg.contains("1.5"),
        "{msg}"
    );
}

// ---------------------------------------------------------------- label shards

#[test]
fn label_shards_cifar_shape() {
    let labels = shuffled_labels(10, 5000, 42);
    let parts = label_shards(&labels, 80, 2, 3).unwrap();
    assert_eq!(parts.len(), 40);
    assert_exact_cover(&parts, 50_000);
    assert!(sizes(&parts).iter().all(|&s| s == 1250));

    // Reconstruct the global stable sort by label; each client must own exactly two
    // aligned 625-blocks of it, and each block is single-label.
    let mut sorted: Vec<usize> = (0..labels.len()).collect();
    sorted.sort_by_key(|&i| labels[i]);
    let mut position = vec![0; labels.len()];
    for (pos, &i) in sorted.iter().enumerate() {
        position[i] = pos;
    }
    let mut all_blocks = BTreeSet::new();
    for part in &parts {
        let blocks: BTreeMap<usize, usize> = part.iter().fold(BTreeMap::new(), |mut m, &i| {
            *m.entry(position[i] / 625).or_insert(0) += 1;
            m
        });
        assert_eq!(blocks.len(), 2, "client does not own exactly two shards");
        assert!(blocks.values().all(|&c| c == 625));
        for &block in blocks.keys() {
            let shard = &sorted[block * 625..(block + 1) * 625];
            assert_eq!(label_set(&labels, shard).len(), 1, "shard spans labels");
            assert!(all_blocks.insert(block));
        }
        assert!(label_set(&labels, part).len() <= 2);
    }
    assert_eq!(all_blocks.len(), 80);
}

#[test]
fn label_shards_is_seeded() {
    let labels = shuffled_labels(4, 50, 1);
    let a = label_shards(&labels, 20, 2, 9).unwrap();
    assert_eq!(a, label_shards(&labels, 20, 2, 9).unwrap());
    assert_ne!(a, label_shards(&labels, 20, 2, 10).unwrap());
}

#[test]
fn label_shards_errors() {
    let labels = shuffled_labels(2, 10, 0); // 20 samples
    assert!(matches!(
        label_shards(&labels, 0, 1, 0),
        Err(PartitionError::ZeroShards)
    ));
    assert!(matches!(
        label_shards(&labels, 4, 0, 0),
        Err(PartitionError::ZeroShardsPerClient)
    ));
    assert!(matches!(
        label_shards(&[], 4, 2, 0),
        Err(PartitionError::EmptyInput { .. })
    ));
    assert!(matches!(
        label_shards(&labels, 40, 2, 0),
        Err(PartitionError::TooManyShards {
            num_shards: 40,
            num_samples: 20
        })
    ));
    assert!(matches!(
        label_shards(&labels, 6, 2, 0),
        Err(PartitionError::SamplesNotDivisibleByShards {
            num_samples: 20,
            num_shards: 6
        })
    ));
    assert!(matches!(
        label_shards(&labels, 10, 3, 0),
        Err(PartitionError::ShardsNotDivisibleByClients {
            num_shards: 10,
            shards_per_client: 3
        })
    ));
}

// ---------------------------------------------------------------- dirichlet

/// Mean over clients of the total-variation distance between the client's label
/// histogram and the uniform one.
fn mean_tv_from_uniform(labels: &[usize], parts: &[Vec<usize>], classes: usize) -> f64 {
    let mut total = 0.0;
    let mut counted = 0;
    for part in parts.iter().filter(|p| !p.is_empty()) {
        let mut hist = vec![0.0; classes];
        part.iter().for_each(|&i| hist[labels[i]] += 1.0);
        let n = part.len() as f64;
        total += hist
            .iter()
            .map(|h| (h / n - 1.0 / classes as f64).abs())
            .sum::<f64>()
            / 2.0;
        counted += 1;
    }
    total / counted as f64
}

#[test]
fn dirichlet_exact_cover_and_min_size() {
    let labels = shuffled_labels(10, 1000, 5);
    for seed in 0..5 {
        let parts = dirichlet(&labels, 10, 0.1, 50, seed).unwrap();
        assert_eq!(parts.len(), 10);
        assert_exact_cover(&parts, labels.len());
        assert!(
            sizes(&parts).iter().all(|&s| s >= 50),
            "{:?}",
            sizes(&parts)
        );
    }
}

#[test]
fn dirichlet_is_seeded() {
    let labels = shuffled_labels(5, 200, 2);
    let a = dirichlet(&labels, 8, 0.5, 10, 11).unwrap();
    assert_eq!(a, dirichlet(&labels, 8, 0.5, 10, 11).unwrap());
    assert_ne!(a, dirichlet(&labels, 8, 0.5, 10, 12).unwrap());
}

#[test]
fn dirichlet_alpha_controls_skew() {
    // Dir(0.1) puts most of each class on one or two clients (TV to uniform ≈ 0.6–0.8);
    // Dir(1000) gives per-client proportions within a few percent of 1/10 (TV ≈ 0.03).
    let labels = shuffled_labels(10, 1000, 8);
    for seed in 0..3 {
        let skewed = dirichlet(&labels, 10, 0.1, 10, seed).unwrap();
        let uniform = dirichlet(&labels, 10, 1000.0, 10, seed).unwrap();
        let tv_skewed = mean_tv_from_uniform(&labels, &skewed, 10);
        let tv_uniform = mean_tv_from_uniform(&labels, &uniform, 10);
        assert!(tv_skewed > 0.4, "alpha=0.1 TV {tv_skewed}");
        assert!(tv_uniform < 0.1, "alpha=1000 TV {tv_uniform}");
        // Near-uniform also in size: every client close to 1000 samples.
        assert!(sizes(&uniform).iter().all(|&s| (900..=1100).contains(&s)));
    }
}

#[test]
fn dirichlet_errors() {
    let labels = shuffled_labels(2, 10, 0); // 20 samples
    assert!(matches!(
        dirichlet(&labels, 0, 1.0, 0, 0),
        Err(PartitionError::ZeroClients)
    ));
    assert!(matches!(
        dirichlet(&[], 2, 1.0, 0, 0),
        Err(PartitionError::EmptyInput { .. })
    ));
    for alpha in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            dirichlet(&labels, 2, alpha, 0, 0),
            Err(PartitionError::InvalidAlpha { .. })
        ));
    }
    assert!(matches!(
        dirichlet(&labels, 5, 1.0, 5, 0),
        Err(PartitionError::MinSizeInfeasible {
            min_partition_size: 5,
            num_clients: 5,
            num_samples: 20
        })
    ));
    // Feasible only with an exactly even split, which Dir(0.01) essentially never draws.
    assert!(matches!(
        dirichlet(&labels, 5, 0.01, 4, 0),
        Err(PartitionError::MinSizeNotReached {
            min_partition_size: 4,
            ..
        })
    ));
}

// ---------------------------------------------------------------- pathological

#[test]
fn pathological_k_labels_each() {
    let labels = shuffled_labels(10, 600, 4);
    for k in [1, 2, 3, 10] {
        let parts = pathological(&labels, 20, k, 6).unwrap();
        assert_eq!(parts.len(), 20);
        assert_exact_cover(&parts, labels.len());
        for part in &parts {
            assert_eq!(label_set(&labels, part).len(), k);
        }
        // Each class is held by ⌊20k/10⌋ or ⌈20k/10⌉ clients (here exactly 2k) and split
        // evenly among them: 600 / (2k) samples per (client, class) pair, ±1.
        let share = 600 / (2 * k);
        for part in &parts {
            let mut hist = BTreeMap::new();
            part.iter()
                .for_each(|&i| *hist.entry(labels[i]).or_insert(0) += 1);
            assert!(
                hist.values().all(|&c| c == share || c == share + 1),
                "{hist:?}"
            );
        }
    }
}

#[test]
fn pathological_uneven_class_usage() {
    // 7 clients × 3 classes = 21 slots over 5 classes: each class held by 4 or 5 clients.
    let labels = shuffled_labels(5, 100, 9);
    let parts = pathological(&labels, 7, 3, 1).unwrap();
    assert_exact_cover(&parts, labels.len());
    let mut holders = vec![0; 5];
    for part in &parts {
        let set = label_set(&labels, part);
        assert_eq!(set.len(), 3);
        set.iter().for_each(|&c| holders[c] += 1);
    }
    assert!(holders.iter().all(|&h| h == 4 || h == 5), "{holders:?}");
}

#[test]
fn pathological_is_seeded() {
    let labels = shuffled_labels(10, 50, 3);
    let a = pathological(&labels, 10, 2, 1).unwrap();
    assert_eq!(a, pathological(&labels, 10, 2, 1).unwrap());
    assert_ne!(a, pathological(&labels, 10, 2, 2).unwrap());
}

#[test]
fn pathological_errors() {
    let labels = shuffled_labels(4, 3, 0); // 4 classes × 3 samples
    assert!(matches!(
        pathological(&labels, 0, 1, 0),
        Err(PartitionError::ZeroClients)
    ));
    assert!(matches!(
        pathological(&labels, 2, 0, 0),
        Err(PartitionError::ZeroClassesPerClient)
    ));
    assert!(matches!(
        pathological(&[], 2, 1, 0),
        Err(PartitionError::EmptyInput { .. })
    ));
    assert!(matches!(
        pathological(&labels, 2, 5, 0),
        Err(PartitionError::TooManyClassesPerClient {
            classes_per_client: 5,
            num_classes: 4
        })
    ));
    assert!(matches!(
        pathological(&labels, 1, 3, 0),
        Err(PartitionError::ClassesNotCovered {
            num_clients: 1,
            classes_per_client: 3,
            num_classes: 4
        })
    ));
    // 8 clients × 2 classes: each class held by 4 clients but has only 3 samples.
    assert!(matches!(
        pathological(&labels, 8, 2, 0),
        Err(PartitionError::ClassTooSmall {
            count: 3,
            holders: 4,
            ..
        })
    ));
}

// ---------------------------------------------------------------- by_key

#[test]
fn by_key_groups_in_sorted_key_order() {
    let keys = ["vqa", "coco", "vqa", "ocr", "coco", "vqa"];
    let (names, parts) = by_key(&keys).unwrap();
    assert_eq!(names, vec!["coco", "ocr", "vqa"]);
    assert_eq!(parts, vec![vec![1, 4], vec![3], vec![0, 2, 5]]);
    assert_exact_cover(&parts, keys.len());
}

#[test]
fn by_key_errors_on_empty() {
    let empty: [u32; 0] = [];
    assert!(matches!(
        by_key(&empty),
        Err(PartitionError::EmptyInput { .. })
    ));
}

// ---------------------------------------------------------------- train/test split

#[test]
fn split_sizes_and_cover() {
    let indices: Vec<usize> = (100..200).collect();
    let (train, test) = train_test_split(&indices, 0.2, 3).unwrap();
    assert_eq!((train.len(), test.len()), (80, 20));
    let mut union: Vec<usize> = train.iter().chain(&test).copied().collect();
    union.sort_unstable();
    assert_eq!(union, indices);
    assert!(train.windows(2).all(|w| w[0] < w[1]) && test.windows(2).all(|w| w[0] < w[1]));
    // round(0.25 * 10) = round(2.5) = 3 (half away from zero).
    assert_eq!(
        train_test_split(&indices[..10], 0.25, 0).unwrap().1.len(),
        3
    );
}

#[test]
fn split_keeps_both_sides_non_empty() {
    // round(0.01 * 5) = 0 → clamped to 1; round(0.99 * 5) = 5 → clamped to 4.
    assert_eq!(
        train_test_split(&[1, 2, 3, 4, 5], 0.01, 0).unwrap().1.len(),
        1
    );
    assert_eq!(
        train_test_split(&[1, 2, 3, 4, 5], 0.99, 0).unwrap().0.len(),
        1
    );
    assert_eq!(train_test_split(&[7], 0.5, 0).unwrap(), (vec![7], vec![]));
}

#[test]
fn split_is_seeded() {
    let indices: Vec<usize> = (0..100).collect();
    let a = train_test_split(&indices, 0.3, 1).unwrap();
    assert_eq!(a, train_test_split(&indices, 0.3, 1).unwrap());
    assert_ne!(a, train_test_split(&indices, 0.3, 2).unwrap());
}

#[test]
fn split_errors() {
    for fraction in [0.0, 1.0, -0.1, 1.5, f64::NAN] {
        assert!(matches!(
            train_test_split(&[1, 2, 3], fraction, 0),
            Err(PartitionError::InvalidFraction { .. })
        ));
    }
    assert!(matches!(
        train_test_split(&[], 0.2, 0),
        Err(PartitionError::EmptyInput { .. })
    ));
}
