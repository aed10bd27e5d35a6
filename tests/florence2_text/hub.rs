//! Model folders and the hub cache: local folders, offline mode, named missing files.

use super::*;

#[test]
fn corrupt_or_missing_tokenizer_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, "{\"version\": \"1.0\", \"model\": ").unwrap();
    let err = Florence2Tokenizer::from_file(&path).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::Parse { path: p, .. } if p == &path),
        "{err}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));

    let missing = dir.path().join("absent.json");
    let err = Florence2Tokenizer::from_file(&missing).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::Read { path: p, .. } if p == &missing),
        "{err}"
    );

    // A valid tokenizer.json without BART's special tokens.
    let text = std::fs::read_to_string(fixture("tokenizer.json"))
        .unwrap()
        .replace("\"<pad>\"", "\"<nopad>\"");
    std::fs::write(&path, text).unwrap();
    let err = Florence2Tokenizer::from_file(&path).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::MissingToken { token, .. } if token == "<pad>"),
        "{err}"
    );
}
fn write_model_dir(dir: &Path, weights: &str, tokenizer: bool) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    std::fs::write(dir.join(weights), b"weights").unwrap();
    if tokenizer {
        std::fs::copy(fixture("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    }
}
#[test]
fn local_folder_resolves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("Florence-2-tiny");
    write_model_dir(&dir, "model.safetensors", true);
    std::fs::write(dir.join("pytorch_model.bin"), b"older").unwrap();
    // The options would fail any hub access: a folder never touches the hub.
    let files =
        Florence2Files::resolve_with(dir.to_str().unwrap(), &offline_hub(tmp.path())).unwrap();
    assert_eq!(files.weights, dir.join("model.safetensors"));
    assert_eq!(files.weights_format, WeightsFormat::Safetensors);
    assert_eq!(files.config, dir.join("config.json"));
    assert_eq!(files.tokenizer, dir.join("tokenizer.json"));
    assert_eq!(files.preprocessor_config, None);
    assert_eq!(files.source, ModelSource::Local(dir.clone()));
    assert_eq!(files.dir(), dir.as_path());
    Florence2Tokenizer::from_file(&files.tokenizer).unwrap();

    let original = tmp.path().join("original");
    write_model_dir(&original, "pytorch_model.bin", true);
    std::fs::write(
        original.join("preprocessor_config.json"),
        r#"{"size": {"height": 384, "width": 384}, "resample": 3}"#,
    )
    .unwrap();
    let files = Florence2Files::from_dir(&original).unwrap();
    let p = Florence2Processor::from_files(&files).unwrap();
    assert_eq!(
        p.image_config(),
        &ImageConfig::default().with_size(384, 384)
    );
    assert_eq!(p.prompt_ids("<OD>").unwrap().first(), Some(&0));
    assert_eq!(files.weights_format, WeightsFormat::PytorchBin);
    assert_eq!(
        files.preprocessor_config,
        Some(original.join("preprocessor_config.json"))
    );

    let no_tok = tmp.path().join("no_tokenizer");
    write_model_dir(&no_tok, "model.safetensors", false);
    let err = Florence2Files::from_dir(&no_tok).unwrap_err();
    assert!(
        matches!(&err, HubError::MissingFile { file, .. } if file == "tokenizer.json"),
        "{err}"
    );
    std::fs::remove_file(no_tok.join("model.safetensors")).unwrap();
    let err = Florence2Files::from_dir(&no_tok).unwrap_err();
    assert!(
        err.to_string()
            .contains("model.safetensors or pytorch_model.bin"),
        "{err}"
    );

    let err = Florence2Files::resolve_with("./no/such/dir", &offline_hub(tmp.path())).unwrap_err();
    assert!(matches!(err, HubError::InvalidModel(_)), "{err}");
}
/// Lays out `models--org--name/{refs/main, snapshots/<sha>/...}` as huggingface_hub does.
fn fake_cache(cache: &Path, repo: &str, files: &[&str]) -> PathBuf {
    let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let sha = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), sha).unwrap();
    let snapshot = repo_dir.join("snapshots").join(sha);
    std::fs::create_dir_all(&snapshot).unwrap();
    for file in files {
        std::fs::write(snapshot.join(file), b"{}").unwrap();
    }
    snapshot
}
#[test]
fn offline_mode_reads_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let snapshot = fake_cache(
        &cache,
        "microsoft/Florence-2-base",
        &[
            "config.json",
            "pytorch_model.bin",
            "tokenizer.json",
            "preprocessor_config.json",
        ],
    );
    let files =
        Florence2Files::resolve_with("microsoft/Florence-2-base", &offline_hub(&cache)).unwrap();
    assert_eq!(files.weights, snapshot.join("pytorch_model.bin"));
    assert_eq!(files.weights_format, WeightsFormat::PytorchBin);
    assert_eq!(files.tokenizer, snapshot.join("tokenizer.json"));
    assert_eq!(
        files.preprocessor_config,
        Some(snapshot.join("preprocessor_config.json"))
    );
    assert_eq!(
        files.source,
        ModelSource::Hub {
            repo: "microsoft/Florence-2-base".into(),
            revision: "main".into()
        }
    );
    // Even online, a fully cached model needs no network.
    let online = HubOptions {
        offline: false,
        endpoint: Some("http://127.0.0.1:9".into()),
        ..offline_hub(&cache)
    };
    assert_eq!(
        Florence2Files::resolve_with("microsoft/Florence-2-base", &online).unwrap(),
        files
    );
}
#[test]
fn offline_mode_names_the_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    fake_cache(
        &cache,
        "florence-community/Florence-2-base",
        &["config.json", "model.safetensors"],
    );
    let err =
        Florence2Files::resolve_with("florence-community/Florence-2-base", &offline_hub(&cache))
            .unwrap_err();
    match &err {
        HubError::NotInCache {
            repo,
            file,
            cache: c,
            ..
        } => {
            assert_eq!(repo, "florence-community/Florence-2-base");
            assert_eq!(file, "tokenizer.json");
            assert_eq!(c, &cache);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
    let err = Florence2Files::resolve_with("microsoft/Florence-2-large", &offline_hub(&cache))
        .unwrap_err();
    assert!(
        matches!(&err, HubError::NotInCache { file, .. } if file == "config.json"),
        "{err}"
    );
}
