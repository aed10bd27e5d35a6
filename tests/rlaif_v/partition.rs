//! Partitions of the read samples: one client per source, sources grouped, IID, the
//! train/test split and the client cap.

use super::*;

/// Every client's train and test are disjoint, ascending, and together its samples.
fn check_clients(data: &RlaifV, clients: &[fedvlm::data::RlaifVClient]) {
    let mut all: Vec<usize> = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        assert_eq!(client.client, c);
        assert!(client.train.windows(2).all(|w| w[0] < w[1]));
        assert!(client.test.windows(2).all(|w| w[0] < w[1]));
        assert!(client.train.iter().all(|i| !client.test.contains(i)));
        assert!(!client.train.is_empty() && !client.test.is_empty());
        for &i in client.train.iter().chain(&client.test) {
            let source = &data.samples()[i].origin_dataset;
            assert!(
                client.sources.contains(source),
                "{source} not in {:?}",
                client.sources
            );
        }
        all.extend(client.train.iter().chain(&client.test));
    }
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(all.len(), before, "clients overlap");
}

#[test]
fn partition_one_client_per_source() {
    let (_dir, data) = dataset();
    let options = RlaifVPartitionOptions::new(RlaifVScheme::BySource).test_fraction(0.25);
    let clients = partition_rlaif_v(&data, &options).expect("partition");
    assert_eq!(clients.len(), 3);
    let sources: Vec<&[String]> = clients.iter().map(|c| c.sources.as_slice()).collect();
    assert_eq!(
        sources,
        [[ALPHA.to_string()], [BETA.to_string()], [GAMMA.to_string()]]
    );
    let sizes: Vec<(usize, usize)> = clients
        .iter()
        .map(|c| (c.train.len(), c.test.len()))
        .collect();
    // round(0.25 * 5) = 1, round(0.25 * 4) = 1.
    assert_eq!(sizes, [(4, 1), (3, 1), (3, 1)]);
    check_clients(&data, &clients);
    assert_eq!(clients.iter().map(|c| c.len()).sum::<usize>(), data.len());
}

#[test]
fn partition_sources_grouped_into_two_clients() {
    let (_dir, data) = dataset();
    let grouped = RlaifVScheme::GroupedBySource { num_clients: 2 };
    let clients =
        partition_rlaif_v(&data, &RlaifVPartitionOptions::new(grouped)).expect("partition");
    // Largest source first (alpha, 5) to client 0; beta (4) to the empty client 1; gamma (4)
    // to the smaller client, 1.
    let sources: Vec<Vec<&str>> = clients
        .iter()
        .map(|c| c.sources.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(sources, [vec![ALPHA], vec![BETA, GAMMA]]);
    assert_eq!(clients[0].len(), 5);
    assert_eq!(clients[1].len(), 8);
    check_clients(&data, &clients);

    let too_many = RlaifVScheme::GroupedBySource { num_clients: 4 };
    let err = partition_rlaif_v(&data, &RlaifVPartitionOptions::new(too_many)).expect_err("4 > 3");
    assert!(
        matches!(
            err,
            FedError::Data(DataError::InvalidArgument {
                field: "num_clients",
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn iid_partition_is_reproducible_by_seed() {
    let (_dir, data) = dataset();
    let scheme = |seed| RlaifVScheme::Iid {
        num_clients: 2,
        seed,
    };
    let a = partition_rlaif_v(&data, &RlaifVPartitionOptions::new(scheme(7))).expect("a");
    let b = partition_rlaif_v(&data, &RlaifVPartitionOptions::new(scheme(7))).expect("b");
    assert_eq!(a, b);
    assert_eq!(a.iter().map(|c| c.len()).collect::<Vec<_>>(), [7, 6]);
    check_clients(&data, &a);
    let differs = (8..12).any(|seed| {
        partition_rlaif_v(&data, &RlaifVPartitionOptions::new(scheme(seed))).expect("c") != a
    });
    assert!(differs, "the seed has no effect");
}

#[test]
fn train_test_split_and_client_cap() {
    let (_dir, data) = dataset();
    let options = RlaifVPartitionOptions::new(RlaifVScheme::BySource)
        .test_fraction(0.5)
        .seed(3);
    let a = partition_rlaif_v(&data, &options).expect("a");
    assert_eq!(a, partition_rlaif_v(&data, &options).expect("again"));
    // round(0.5 * 5) = 3 (ties away from zero), round(0.5 * 4) = 2.
    let tests: Vec<usize> = a.iter().map(|c| c.test.len()).collect();
    assert_eq!(tests, [3, 2, 2]);
    let other = partition_rlaif_v(&data, &options.clone().seed(4)).expect("b");
    assert_eq!(
        other.iter().map(|c| c.len()).collect::<Vec<_>>(),
        a.iter().map(|c| c.len()).collect::<Vec<_>>()
    );

    let capped =
        partition_rlaif_v(&data, &options.clone().max_samples_per_client(3)).expect("capped");
    assert!(capped.iter().all(|c| c.len() == 3));
    check_clients(&data, &capped);

    let err = partition_rlaif_v(&data, &options.clone().test_fraction(1.0)).expect_err("fraction");
    assert!(matches!(err, FedError::Partition(_)), "{err:?}");
}
