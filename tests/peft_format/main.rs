//! Adapters in Hugging Face PEFT's format: round trips, the fixture written by Python peft
//! (`scripts/generate_peft_fixture.py`), the exact key and field sets, and the typed errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::Backend;
use burn::tensor::{Distribution, Tensor};
use fedvlm::federated::{Payload, PayloadError, TensorValues, WireDtype, apply_tensors};
use fedvlm::lora::{
    AdapterMatrix, Dense, PeftAdapterConfig, PeftExport, freeze_all, load_peft_adapter, peft_key,
    save_peft_adapter,
};
use fedvlm::{FedError, LoraConfig, PersonalizedLora, Sharing};
use serde_json::Value;

mod refusals;

type B = Autodiff<Flex>;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/florence2/peft/adapter"
);
/// Florence-2's BART sits at `model.language_model` in transformers' native module tree.
const PREFIX: &str = "model.language_model.";

fn lora() -> LoraConfig {
    LoraConfig::new(4, 8.0)
}

// ---------------------------------------------------------------------------------------------
// a toy whose paths mimic Florence-2's BART decoder: decoder.layers.N.self_attn.{q,k,v}_proj

#[derive(Module, Debug)]
struct SelfAttn<B: Backend> {
    q_proj: Dense<B>,
    k_proj: Linear<B>,
    v_proj: Dense<B>,
}

#[derive(Module, Debug)]
struct DecoderLayer<B: Backend> {
    self_attn: SelfAttn<B>,
}

#[derive(Module, Debug)]
struct Decoder<B: Backend> {
    layers: Vec<DecoderLayer<B>>,
}

#[derive(Module, Debug)]
struct Bart<B: Backend> {
    decoder: Decoder<B>,
}

/// Two decoder layers of width 32; the last one's q_proj / v_proj (v_proj: 32 -> `v_out`)
/// adapted as `adapt` says, with `config`; everything but the adapters frozen, as a fine-tuned
/// model is (this also initialises burn's lazy parameters: a clone of a lazy parameter draws
/// its own values, so a lazy base would differ between a module and its loaded copy).
fn bart(v_out: usize, adapt: [bool; 2], config: &LoraConfig, seed: u64) -> Bart<B> {
    let device = Default::default();
    let dense = |d_out| Dense::Plain(LinearConfig::new(32, d_out).init::<B>(&device));
    let layers = (0..2)
        .map(|n| {
            let mut attn = SelfAttn {
                q_proj: dense(32),
                k_proj: LinearConfig::new(32, 32).init(&device),
                v_proj: dense(if n == 1 { v_out } else { 32 }),
            };
            if n == 1 {
                if adapt[0] {
                    attn.q_proj = attn.q_proj.adapt(config, seed, "q_proj").unwrap();
                }
                if adapt[1] {
                    attn.v_proj = attn.v_proj.adapt(config, seed + 1, "v_proj").unwrap();
                }
            }
            DecoderLayer { self_attn: attn }
        })
        .collect();
    let model = Bart {
        decoder: Decoder { layers },
    };
    freeze_all(model, Sharing::PLora)
}

fn florence_like(seed: u64) -> Bart<B> {
    bart(32, [true, true], &lora(), seed)
}

fn adapter(dense: &Dense<B>) -> &PersonalizedLora<B> {
    match dense {
        Dense::Lora(lora) => lora,
        Dense::Plain(_) => panic!("not adapted"),
    }
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

// ---------------------------------------------------------------------------------------------
// files

/// Every tensor of a safetensors file, as f32, by name; and its metadata.
type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn read_tensors(path: &Path) -> (Tensors, Option<std::collections::HashMap<String, String>>) {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let v = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, (view.shape().to_vec(), v))
        })
        .collect();
    (tensors, meta.metadata().clone())
}

fn write_tensors(path: &Path, tensors: &Tensors) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (s, v))| {
            let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (k.clone(), s.clone(), b)
        })
        .collect();
    let views = bytes.iter().map(|(k, s, b)| {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b);
        (k.as_str(), view.unwrap())
    });
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A copy of the fixture adapter folder, editable.
fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(Path::new(FIXTURE).join(file), tmp.path().join(file)).unwrap();
    }
    let dir = tmp.path().to_path_buf();
    (tmp, dir)
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("adapter_config.json");
    let mut config = read_json(&path);
    edit(config.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

fn key(layer: &str, matrix: AdapterMatrix) -> String {
    peft_key(
        PREFIX,
        &format!("decoder.layers.1.self_attn.{layer}"),
        matrix,
    )
}

// ---------------------------------------------------------------------------------------------
// round trip

#[derive(Module, Debug)]
struct Block<B: Backend> {
    proj: Dense<B>,
    head: Linear<B>,
}

#[derive(Module, Debug)]
struct Net<B: Backend> {
    fc: PersonalizedLora<B>,
    block: Block<B>,
}

fn net(seed: u64) -> Net<B> {
    let device = Default::default();
    let config = LoraConfig::new(3, 6.0).with_dropout(0.1);
    let fc = LinearConfig::new(6, 5).init::<B>(&device);
    let proj = Dense::Plain(LinearConfig::new(5, 7).init::<B>(&device));
    Net {
        fc: PersonalizedLora::from_linear(fc, &config, seed).unwrap(),
        block: Block {
            proj: proj.adapt(&config, seed + 1, "block.proj").unwrap(),
            head: LinearConfig::new(7, 2).init(&device),
        },
    }
}

/// Gives every B of `net` random non-zero values (B starts at zero).
fn train(net: Net<B>) -> Net<B> {
    let device = Default::default();
    let mut payload = Payload::default();
    for (path, shape) in [("fc.lora_b", [5, 3]), ("block.proj.lora_b", [7, 3])] {
        let t = Tensor::<B, 2>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let tensor = TensorValues::new(path, shape.to_vec(), values(t)).unwrap();
        payload.tensors.insert(path.into(), tensor);
    }
    apply_tensors(&net, &payload).unwrap()
}

#[test]
fn round_trip_restores_every_matrix_and_keeps_ids_and_flags() {
    let config = LoraConfig::new(3, 6.0).with_dropout(0.1);
    let trained = train(net(1));
    let tmp = tempfile::tempdir().unwrap();
    save_peft_adapter(&trained, tmp.path(), &PeftExport::new("model.", config)).unwrap();

    let (tensors, _) = read_tensors(&tmp.path().join("adapter_model.safetensors"));
    let keys: Vec<(&str, &[usize])> = tensors
        .iter()
        .map(|(k, (s, _))| (k.as_str(), s.as_slice()))
        .collect();
    assert_eq!(
        keys,
        [
            (
                "base_model.model.model.block.proj.lora_A.weight",
                &[3, 5][..]
            ),
            ("base_model.model.model.block.proj.lora_B.weight", &[7, 3]),
            ("base_model.model.model.fc.lora_A.weight", &[3, 6]),
            ("base_model.model.model.fc.lora_B.weight", &[5, 3]),
        ]
    );
    let json = read_json(&tmp.path().join("adapter_config.json"));
    assert_eq!(json["r"], 3);
    assert_eq!(json["lora_alpha"], 6);
    assert_eq!(json["lora_dropout"], 0.1);
    assert_eq!(
        json["target_modules"],
        serde_json::json!(["model.block.proj", "model.fc"])
    );

    // FFA-LoRA freezes A: the flags must survive the load
    let fresh = freeze_all(net(7), Sharing::FfaLora);
    let loaded = load_peft_adapter(&fresh, tmp.path(), "model.", &config).unwrap();
    let pairs = [
        (&loaded.fc, &fresh.fc, &trained.fc),
        (
            adapter(&loaded.block.proj),
            adapter(&fresh.block.proj),
            adapter(&trained.block.proj),
        ),
    ];
    for (got, before, want) in pairs {
        assert_eq!(values(got.lora_a.val()), values(want.lora_a.val()));
        assert_eq!(values(got.lora_b.val()), values(want.lora_b.val()));
        assert_ne!(values(got.lora_b.val()), values(before.lora_b.val()));
        assert_eq!(got.lora_a.id, before.lora_a.id);
        assert_eq!(got.lora_b.id, before.lora_b.id);
        assert!(!got.lora_a.is_require_grad());
        assert!(got.lora_b.is_require_grad());
        // the frozen base layer is the fresh module's, untouched
        assert_eq!(got.weight.id, before.weight.id);
        assert_eq!(values(got.weight.val()), values(before.weight.val()));
        assert!(!got.weight.is_require_grad());
    }
    assert_eq!(loaded.block.head.weight.id, fresh.block.head.weight.id);
}

#[test]
fn half_precision_files_round_trip_to_rounded_values() {
    let config = LoraConfig::new(3, 6.0);
    let trained = train(net(1));
    let tmp = tempfile::tempdir().unwrap();
    let export = PeftExport::new("", config).with_dtype(WireDtype::F16);
    save_peft_adapter(&trained, tmp.path(), &export).unwrap();
    let loaded = load_peft_adapter(&net(2), tmp.path(), "", &config).unwrap();
    let want: Vec<f32> = values(trained.fc.lora_b.val())
        .into_iter()
        .map(|v| half::f16::from_f32(v).to_f32())
        .collect();
    assert_eq!(values(loaded.fc.lora_b.val()), want);
}

// ---------------------------------------------------------------------------------------------
// the fixture written by Python peft

#[test]
fn python_peft_adapter_loads_into_florence_like_decoder() {
    let (file, _) = read_tensors(&Path::new(FIXTURE).join("adapter_model.safetensors"));
    assert_eq!(file.len(), 4);
    let fresh = florence_like(3);
    let loaded = load_peft_adapter(&fresh, FIXTURE, PREFIX, &lora()).unwrap();
    let attn = &loaded.decoder.layers[1].self_attn;
    for (name, layer) in [("q_proj", &attn.q_proj), ("v_proj", &attn.v_proj)] {
        let layer = adapter(layer);
        let (shape_a, a) = &file[&key(name, AdapterMatrix::A)];
        let (shape_b, b) = &file[&key(name, AdapterMatrix::B)];
        assert_eq!(shape_a, &[4, 32]);
        assert_eq!(shape_b, &[32, 4]);
        assert_eq!(&values(layer.lora_a.val()), a, "{name} A");
        assert_eq!(&values(layer.lora_b.val()), b, "{name} B");
        assert!(a.iter().chain(b).all(|v| *v != 0.0));
    }
    // layer 0 and the unadapted k_proj are untouched
    let before = &fresh.decoder.layers[1].self_attn;
    assert_eq!(
        values(attn.k_proj.weight.val()),
        values(before.k_proj.weight.val())
    );
}

#[test]
fn saved_files_have_exactly_pefts_keys_values_and_config() {
    let model = load_peft_adapter(&florence_like(3), FIXTURE, PREFIX, &lora()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let export = PeftExport::new(PREFIX, lora())
        .with_base_model("tests/fixtures/florence2/tiny_native")
        .with_auto_mapping(
            "Florence2ForConditionalGeneration",
            "transformers.models.florence2.modeling_florence2",
        );
    save_peft_adapter(&model, tmp.path(), &export).unwrap();

    // tensors: same keys, shapes and bits; peft's metadata
    let (ours, meta) = read_tensors(&tmp.path().join("adapter_model.safetensors"));
    let (theirs, their_meta) = read_tensors(&Path::new(FIXTURE).join("adapter_model.safetensors"));
    assert_eq!(ours, theirs);
    assert_eq!(meta, their_meta);
    assert_eq!(meta.unwrap().get("format").map(String::as_str), Some("pt"));

    // config: the same field set, and the same values (target_modules is a set for peft)
    let sorted_targets = |mut v: Value| {
        let targets = v["target_modules"].as_array_mut().unwrap();
        targets.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        v
    };
    let ours = sorted_targets(read_json(&tmp.path().join("adapter_config.json")));
    let theirs = sorted_targets(read_json(&Path::new(FIXTURE).join("adapter_config.json")));
    let fields = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(fields(&ours), fields(&theirs));
    assert_eq!(ours, theirs);

    // a module with the default export (no base model, no auto mapping) writes the same fields
    save_peft_adapter(&model, tmp.path(), &PeftExport::new(PREFIX, lora())).unwrap();
    let plain = read_json(&tmp.path().join("adapter_config.json"));
    assert_eq!(fields(&plain), fields(&theirs));
    assert_eq!(plain["auto_mapping"], Value::Null);
}

#[test]
fn peft_config_reads_and_gives_the_matching_lora_config() {
    let config = PeftAdapterConfig::read(FIXTURE).unwrap();
    assert_eq!(config.r, 4);
    assert_eq!(config.lora_alpha, 8.0);
    assert!(!config.use_rslora);
    assert_eq!(config.lora_config(), LoraConfig::new(4, 8.0));
    let mut targets = config.target_modules.clone();
    targets.sort();
    assert_eq!(
        targets,
        [
            "model.language_model.decoder.layers.1.self_attn.q_proj",
            "model.language_model.decoder.layers.1.self_attn.v_proj"
        ]
    );

    // rsLoRA: scaling alpha / sqrt(r) = 4 / 2 = 2 = 8 / 4, so the file loads with LoraConfig(4, 8)
    let (_tmp, dir) = fixture_copy();
    edit_config(&dir, |c| {
        c.insert("use_rslora".into(), true.into());
        c.insert("lora_alpha".into(), 4.into());
    });
    let rs = PeftAdapterConfig::read(&dir).unwrap();
    assert_eq!(rs.scaling(), 2.0);
    assert_eq!(rs.lora_config(), LoraConfig::new(4, 8.0));
    load_peft_adapter(&florence_like(3), &dir, PREFIX, &lora()).unwrap();
}
