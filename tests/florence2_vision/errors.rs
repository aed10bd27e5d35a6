//! Typed errors: misshapen configs, checkpoints of another shape, bad inputs.

use super::*;

#[test]
fn wrong_shaped_config_is_a_typed_error() {
    let device = Default::default();
    let mut config = tiny_config();
    config.num_heads.pop();
    match config.init::<B>(&device) {
        Err(FedError::InvalidConfig { field, .. }) => assert_eq!(field, "num_heads"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }

    let mut config = tiny_config();
    config.num_groups[2] = 5;
    match config.validate() {
        Err(FedError::InvalidConfig { field, reason }) => {
            assert_eq!(field, "num_groups");
            assert!(reason.contains("24"), "{reason}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }

    let mut config = tiny_config();
    config.activation_function = "gelu_new".into();
    assert!(matches!(
        config.init_projector::<B>(&device),
        Err(FedError::InvalidConfig {
            field: "activation_function",
            ..
        })
    ));

    let mut config = tiny_config();
    config.embed_dim[3] = 41;
    config.num_heads[3] = 1;
    config.num_groups[3] = 1;
    assert!(matches!(
        config.validate(),
        Err(FedError::InvalidConfig {
            field: "embed_dim",
            ..
        })
    ));

    let mut config = tiny_config();
    config.depths = vec![];
    assert!(matches!(
        weights::load_native::<B>(native_file(), &config, &device),
        Err(WeightsError::InvalidConfig(_))
    ));
}
#[test]
fn checkpoint_of_another_shape_names_the_key() {
    let device = Default::default();
    // A wider last stage: the native file's stage-3 tensors no longer fit.
    let mut config = tiny_config();
    config.embed_dim[3] = 48;
    match weights::load_native::<B>(native_file(), &config, &device) {
        Err(WeightsError::ShapeMismatch {
            key,
            expected,
            found,
            ..
        }) => {
            assert_eq!(key, "vision_tower.convs.3.conv.weight");
            assert_eq!((expected, found), (vec![48, 24, 3, 3], vec![40, 24, 3, 3]));
        }
        other => panic!("expected ShapeMismatch, got {:?}", other.map(|_| ())),
    }
    // One block more in stage 0: its tensors are missing from the file.
    let mut config = tiny_config();
    config.depths[0] = 2;
    match weights::load_original::<B>(original_file(), &config, &device) {
        Err(WeightsError::MissingKey { key, others, .. }) => {
            assert!(key.starts_with("vision_tower.blocks.0.1."), "{key}");
            assert_eq!(others, 31);
        }
        other => panic!("expected MissingKey, got {:?}", other.map(|_| ())),
    }
    // One block fewer in stage 1: the file's extra block is unexpected.
    let mut config = tiny_config();
    config.depths[1] = 1;
    match weights::load_native::<B>(native_file(), &config, &device) {
        Err(WeightsError::UnexpectedKey { key, .. }) => {
            assert!(key.starts_with("vision_tower.blocks.1.1."), "{key}")
        }
        other => panic!("expected UnexpectedKey, got {:?}", other.map(|_| ())),
    }
}
#[test]
fn bad_inputs_are_typed_errors() {
    let device = Default::default();
    let (tower, projector) =
        weights::load_native::<B>(native_file(), &tiny_config(), &device).expect("load");
    let gray = Tensor::<B, 4>::zeros([1, 1, 64, 64], &device);
    assert!(matches!(
        tower.forward(gray),
        Err(FedError::InvalidConfig {
            field: "pixel_values",
            ..
        })
    ));
    // An empty image has no output after stage 0's 7x7 convolution (padding 3).
    let empty = Tensor::<B, 4>::zeros([1, 3, 0, 0], &device);
    assert!(matches!(
        tower.forward(empty),
        Err(FedError::InvalidConfig {
            field: "pixel_values",
            ..
        })
    ));
    // 16x16 -> grids 4, 2, 1, 1.
    let tiny = Tensor::<B, 4>::zeros([1, 3, 16, 16], &device);
    let (tokens, grid) = tower.forward(tiny).expect("small image");
    assert_eq!(grid, (1, 1));
    assert!(projector.forward(tokens.clone(), grid).is_ok());
    assert!(matches!(
        projector.forward(tokens, (2, 1)),
        Err(FedError::InvalidConfig {
            field: "image_tokens",
            ..
        })
    ));
    // 192x192 -> a 6x6 grid, more than the 5-row position tables.
    let big = Tensor::<B, 4>::zeros([1, 3, 192, 192], &device);
    let (tokens, grid) = tower.forward(big).expect("forward");
    assert_eq!(grid, (6, 6));
    assert!(projector.forward(tokens, grid).is_err());
}
