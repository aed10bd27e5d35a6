//! Hostile bytes for the OK-VQA reader: seeded mutations of the file `datasets` wrote
//! (`tests/fixtures/okvqa/`, snappy-compressed by pyarrow) never panic and come back as typed
//! errors naming the file, as for RLAIF-V (`tests/hostile_data.rs`).

mod common;
use common::mutate::{Mutation, Report, random_set, truncations};
use common::okvqa_parquet::okvqa_fixture_dir;

use fedvlm::data::{ImageCheck, OkVqaOptions, read_okvqa};

const SEED: u64 = 0x5EED_0013;

#[test]
fn hostile_okvqa_parquet_is_typed_errors() {
    let valid = std::fs::read(okvqa_fixture_dir().join("data/val2014-00000-of-00001.parquet"))
        .expect("the fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("val2014-00000-of-00001.parquet");
    let options = [
        OkVqaOptions::new(),
        OkVqaOptions::new().strict(true),
        OkVqaOptions::new()
            .image_check(ImageCheck::Header)
            .answers_per_question(None)
            .max_samples(4),
    ];
    let read = |options: &OkVqaOptions| read_okvqa(&[&path], options, |_| {});
    std::fs::write(&path, &valid).expect("write");
    assert_eq!(read(&options[0]).expect("the valid file reads").kept, 6);

    let n = valid.len();
    let hot = [0, 4, n.saturating_sub(8), n.saturating_sub(4)];
    let mut cases = truncations(n, 16, 120);
    cases.extend(random_set(SEED, n, &hot, 300));
    for value in common::mutate::HUGE {
        cases.push(Mutation::SetU32 {
            offset: n - 8,
            value: value as u32,
        });
    }
    let shown = path.display().to_string();
    let mut report = Report::new("read_okvqa", SEED);
    for (i, mutation) in cases.iter().enumerate() {
        std::fs::write(&path, mutation.apply(&valid)).expect("write");
        report.run(mutation, Some(&shown), || read(&options[i % options.len()]));
    }
    report.finish();
}
