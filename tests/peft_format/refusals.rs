//! What a PEFT adapter file or config may not be: missing files and keys, mismatched shapes, ranks and features.

use super::*;

// ---------------------------------------------------------------------------------------------
// errors

fn payload_error(result: fedvlm::Result<Bart<B>>) -> PayloadError {
    match result {
        Err(FedError::Payload(e)) => e,
        other => panic!("expected a payload error, got {other:?}"),
    }
}
fn config_field(result: fedvlm::Result<Bart<B>>) -> &'static str {
    match result {
        Err(FedError::InvalidConfig { field, .. }) => field,
        other => panic!("expected an invalid-config error, got {other:?}"),
    }
}
#[test]
fn missing_files_are_io_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let model = florence_like(3);
    match load_peft_adapter(&model, tmp.path(), PREFIX, &lora()) {
        Err(FedError::Io { path, .. }) => assert!(path.ends_with("adapter_config.json"), "{path}"),
        other => panic!("{other:?}"),
    }
    std::fs::copy(
        Path::new(FIXTURE).join("adapter_config.json"),
        tmp.path().join("adapter_config.json"),
    )
    .unwrap();
    match load_peft_adapter(&model, tmp.path(), PREFIX, &lora()) {
        Err(FedError::Io { path, .. }) => {
            assert!(path.ends_with("adapter_model.safetensors"), "{path}")
        }
        other => panic!("{other:?}"),
    }
}
#[test]
fn an_adapter_missing_from_the_file_is_named() {
    let (_tmp, dir) = fixture_copy();
    let path = dir.join("adapter_model.safetensors");
    let (mut tensors, _) = read_tensors(&path);
    let gone = key("v_proj", AdapterMatrix::B);
    tensors.remove(&gone).unwrap();
    write_tensors(&path, &tensors);
    let err = payload_error(load_peft_adapter(&florence_like(3), &dir, PREFIX, &lora()));
    assert_eq!(err, PayloadError::MissingTensor(gone));
}
#[test]
fn a_file_key_without_adapter_is_named() {
    // v_proj is not adapted in this module
    let model = bart(32, [true, false], &lora(), 3);
    let err = payload_error(load_peft_adapter(&model, FIXTURE, PREFIX, &lora()));
    assert_eq!(
        err,
        PayloadError::UnknownTensor(key("v_proj", AdapterMatrix::A))
    );

    // a wrong prefix matches nothing
    let err = payload_error(load_peft_adapter(
        &florence_like(3),
        FIXTURE,
        "model.",
        &lora(),
    ));
    assert_eq!(
        err,
        PayloadError::UnknownTensor(key("q_proj", AdapterMatrix::A))
    );

    // an extra tensor in the file (peft's modules_to_save would look like this)
    let (_tmp, dir) = fixture_copy();
    let path = dir.join("adapter_model.safetensors");
    let (mut tensors, _) = read_tensors(&path);
    let extra = "base_model.model.lm_head.weight".to_string();
    tensors.insert(extra.clone(), (vec![2], vec![1.0, 2.0]));
    write_tensors(&path, &tensors);
    let err = payload_error(load_peft_adapter(&florence_like(3), &dir, PREFIX, &lora()));
    assert_eq!(err, PayloadError::UnknownTensor(extra));
}
#[test]
fn a_shape_mismatch_is_named() {
    // v_proj: 32 -> 16 here, 32 -> 32 in the file
    let model = bart(16, [true, true], &lora(), 3);
    let err = payload_error(load_peft_adapter(&model, FIXTURE, PREFIX, &lora()));
    assert_eq!(
        err,
        PayloadError::ShapeMismatch {
            name: key("v_proj", AdapterMatrix::B),
            expected: vec![16, 4],
            found: vec![32, 4],
        }
    );
}
#[test]
fn rank_and_alpha_mismatches_are_refused() {
    // adapters of rank 2 against a file of rank 4
    let rank2 = LoraConfig::new(2, 4.0);
    let model = bart(32, [true, true], &rank2, 3);
    assert_eq!(
        config_field(load_peft_adapter(&model, FIXTURE, PREFIX, &rank2)),
        "r"
    );
    // the caller's LoraConfig does not describe the module's adapters
    assert_eq!(
        config_field(load_peft_adapter(&model, FIXTURE, PREFIX, &lora())),
        "r"
    );
    // same rank, other alpha: another scaling
    let alpha16 = LoraConfig::new(4, 16.0);
    let model = bart(32, [true, true], &alpha16, 3);
    assert_eq!(
        config_field(load_peft_adapter(&model, FIXTURE, PREFIX, &alpha16)),
        "lora_alpha"
    );
    // saving checks the ranks too
    let tmp = tempfile::tempdir().unwrap();
    match save_peft_adapter(&model, tmp.path(), &PeftExport::new(PREFIX, rank2)) {
        Err(FedError::InvalidConfig { field: "r", .. }) => {}
        other => panic!("{other:?}"),
    }
}
#[test]
fn unsupported_peft_features_are_refused() {
    for (field, value) in [
        ("use_dora", Value::Bool(true)),
        ("bias", Value::from("all")),
        ("peft_type", Value::from("IA3")),
        ("rank_pattern", serde_json::json!({"q_proj": 8})),
    ] {
        let (_tmp, dir) = fixture_copy();
        edit_config(&dir, |c| {
            c.insert(field.into(), value);
        });
        assert_eq!(
            config_field(load_peft_adapter(&florence_like(3), &dir, PREFIX, &lora())),
            field
        );
    }
}
#[test]
fn saving_a_module_without_adapters_is_refused() {
    let model = bart(32, [false, false], &lora(), 3);
    let tmp = tempfile::tempdir().unwrap();
    match save_peft_adapter(&model, tmp.path(), &PeftExport::new(PREFIX, lora())) {
        Err(FedError::InvalidConfig {
            field: "module", ..
        }) => {}
        other => panic!("{other:?}"),
    }
}
