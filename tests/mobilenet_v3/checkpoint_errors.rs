//! Checkpoint errors name what is wrong: missing, unexpected and misshapen keys, other failures.

use super::*;

/// Writes a copy of a fixture's safetensors with `edit` applied to its tensors.
fn tampered(
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>),
) -> PathBuf {
    let bytes = std::fs::read(fixtures().join(format!("{name}.safetensors"))).expect("fixture");
    let tensors = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let mut owned: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = tensors
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut owned);
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(k, (dtype, shape, data))| {
            (
                k.clone(),
                TensorView::new(*dtype, shape.clone(), data).expect("consistent tensor"),
            )
        })
        .collect();
    let out = dir.join(format!("{name}_tampered.safetensors"));
    safetensors::serialize_to_file(views, None, &out).expect("written");
    out
}
#[test]
fn missing_key_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = tampered(dir.path(), "small_w025", |t| {
        t.remove("features.4.block.2.fc1.bias");
    });
    let err =
        MobileNetV3::<B>::load_safetensors(&path, &config_of("small_w025"), &Default::default())
            .expect_err("a key is missing");
    assert!(
        matches!(&err, WeightsError::MissingKey { key, others: 0, .. } if key == "features.4.block.2.fc1.bias"),
        "{err}"
    );
    assert!(err.to_string().contains("features.4.block.2.fc1.bias"));
}
#[test]
fn unexpected_key_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = tampered(dir.path(), "large_w025", |t| {
        let extra = t["classifier.3.bias"].clone();
        t.insert("classifier.4.bias".to_string(), extra);
    });
    let err =
        MobileNetV3::<B>::load_safetensors(&path, &config_of("large_w025"), &Default::default())
            .expect_err("a key is unexpected");
    assert!(
        matches!(&err, WeightsError::UnexpectedKey { key, others: 0, .. } if key == "classifier.4.bias"),
        "{err}"
    );
}
#[test]
fn shape_mismatch_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = tampered(dir.path(), "small_w025", |t| {
        let (_, shape, data) = t.get_mut("features.2.block.1.1.running_var").expect("key");
        assert_eq!(shape, &[24]);
        *shape = vec![23];
        data.truncate(23 * 4);
    });
    let err =
        MobileNetV3::<B>::load_safetensors(&path, &config_of("small_w025"), &Default::default())
            .expect_err("a shape is wrong");
    match &err {
        WeightsError::ShapeMismatch {
            key,
            expected,
            found,
            ..
        } => {
            assert_eq!(key, "features.2.block.1.1.running_var");
            assert_eq!(expected, &[24]);
            assert_eq!(found, &[23]);
        }
        other => panic!("expected a shape mismatch, got {other}"),
    }

    // A configuration of another width: the first mismatching tensor is named.
    let err = MobileNetV3::<B>::load_torchvision(
        fixtures().join("small_w025.pth"),
        &MobileNetV3Config::small(10).with_width_mult(0.5),
        &Default::default(),
    )
    .expect_err("another width");
    assert!(matches!(err, WeightsError::ShapeMismatch { .. }), "{err}");
}
#[test]
fn other_failures_are_typed() {
    let device = Default::default();
    let err = MobileNetV3::<B>::load_torchvision(
        fixtures().join("does_not_exist.pth"),
        &config_of("small_w025"),
        &device,
    )
    .expect_err("no file");
    assert!(matches!(err, WeightsError::Read { .. }), "{err}");
    let dir = tempfile::tempdir().expect("temp dir");
    let garbage = dir.path().join("garbage.pth");
    std::fs::write(&garbage, b"not a checkpoint").expect("written");
    let err = MobileNetV3::<B>::load_torchvision(&garbage, &config_of("small_w025"), &device)
        .expect_err("corrupt file");
    assert!(matches!(err, WeightsError::Read { .. }), "{err}");
    let err = MobileNetV3::<B>::load_safetensors(&garbage, &config_of("small_w025"), &device)
        .expect_err("corrupt file");
    assert!(matches!(err, WeightsError::Read { .. }), "{err}");

    // A small checkpoint is not a large model.
    let err = MobileNetV3::<B>::load_torchvision(
        fixtures().join("small_w025.pth"),
        &MobileNetV3Config::large(10).with_width_mult(0.25),
        &device,
    )
    .expect_err("other architecture");
    assert!(
        matches!(
            err,
            WeightsError::ShapeMismatch { .. } | WeightsError::MissingKey { .. }
        ),
        "{err}"
    );

    let err = MobileNetV3::<B>::load_torchvision(
        fixtures().join("small_w025.pth"),
        &config_of("small_w025").with_dropout(1.5),
        &device,
    )
    .expect_err("invalid config");
    assert!(matches!(err, WeightsError::InvalidConfig(_)), "{err}");
    let fed: FedError = err.into();
    assert!(matches!(fed, FedError::Weights(_)));
}
