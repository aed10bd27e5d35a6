//! The image processor against transformers and Pillow: pixel values, JPEG decoding, configs.

use super::*;

fn reference_pixels() -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(fixture("pixel_values.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .filter(|(_, view)| view.dtype() == safetensors::Dtype::F32)
        .map(|(name, view)| {
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), data))
        })
        .collect()
}
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
#[test]
fn pixel_values_match_transformers_pil_backend() {
    let reference = reference_pixels();
    let rgb = load_image(fixture("image.png")).unwrap();
    let rgba = load_image(fixture("image_rgba.png")).unwrap();
    for (name, image, h, w) in [
        ("pil_64x64", &rgb, 64, 64),
        ("pil_40x72", &rgb, 40, 72),
        ("pil_77x101", &rgb, 77, 101),
        ("pil_rgba_32x32", &rgba, 32, 32),
    ] {
        let config = ImageConfig::default().with_size(h, w);
        let got = preprocess_images(std::slice::from_ref(image), &config).unwrap();
        let (shape, expected) = &reference[name];
        assert_eq!(got.shape.as_slice(), shape.as_slice(), "{name}");
        let diff = max_abs_diff(&got.data, expected);
        println!("{name}: max |rust - pil| = {diff:e}");
        assert!(diff <= PIL_TOLERANCE, "{name}: {diff}");
    }
}
#[test]
fn pixel_values_against_the_torchvision_backend() {
    // transformers' default backend (torchvision) resizes with its own uint8 kernel, which can
    // differ from Pillow by one level of 255 in a few pixels; Microsoft's processor used PIL.
    let reference = reference_pixels();
    let rgb = load_image(fixture("image.png")).unwrap();
    let config = ImageConfig::default().with_size(64, 64);
    let got = preprocess_images(&[rgb], &config).unwrap();
    let diff = max_abs_diff(&got.data, &reference["torchvision_64x64"].1);
    let recorded = cases()["pil_vs_torchvision_max_abs_64x64"]
        .as_f64()
        .unwrap() as f32;
    println!("max |rust - torchvision| = {diff:e} (pil vs torchvision: {recorded:e})");
    assert!((diff - recorded).abs() <= PIL_TOLERANCE);
    assert!(diff <= 1.0 / 255.0 / 0.224 + 1e-4);
}
/// Max difference, in 8-bit levels, between the `image` crate's JPEG decoding (zune-jpeg) and
/// Pillow's (libjpeg-turbo) on the 4:2:0 fixture. Measured: 3 levels (about a quarter of the
/// values differ, mostly by 1), 0.0523 in normalised units after resizing to 64x64.
const JPEG_LEVELS: u8 = 3;
#[test]
fn jpeg_decoding_against_pillow() {
    let bytes = std::fs::read(fixture("pixel_values.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let pil = st.tensor("jpeg_decoded_rgb8").unwrap();
    let jpeg = load_image(fixture("image.jpg")).unwrap();
    let rust = jpeg.to_rgb8().into_raw();
    assert_eq!(pil.shape(), [77, 101, 3]);
    let levels = rust
        .iter()
        .zip(pil.data())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    let differing = rust.iter().zip(pil.data()).filter(|(a, b)| a != b).count();
    println!(
        "jpeg: max {levels} levels, {differing} of {} values differ",
        rust.len()
    );
    assert!(levels <= JPEG_LEVELS, "{levels}");
    let got = preprocess_images(&[jpeg], &ImageConfig::default().with_size(64, 64)).unwrap();
    let diff = max_abs_diff(&got.data, &reference_pixels()["pil_jpeg_64x64"].1);
    println!("jpeg 64x64: max |rust - pil| = {diff:e}");
    assert!(
        diff <= f32::from(JPEG_LEVELS) / 255.0 / 0.224 + 1e-6,
        "{diff}"
    );
}
#[test]
fn pixel_values_become_a_burn_tensor() {
    let p = processor(16, 24);
    let rgb = load_image(fixture("image.png")).unwrap();
    let pixels = p.preprocess(&[rgb.clone(), rgb]).unwrap();
    assert_eq!(pixels.shape, [2, 3, 16, 24]);
    let tensor = pixels.to_tensor::<Flex>(&Default::default());
    assert_eq!(tensor.dims(), [2, 3, 16, 24]);
    let back = tensor.into_data().to_vec::<f32>().unwrap();
    assert_eq!(back, pixels.data);
}
#[test]
fn missing_image_file_names_the_path() {
    let err = load_image(fixture("no_such_image.png")).unwrap_err();
    assert!(err.to_string().contains("no_such_image.png"), "{err}");
}
#[test]
fn preprocessor_config_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("preprocessor_config.json");
    std::fs::write(
        &path,
        r#"{"do_center_crop": false, "do_normalize": true, "do_rescale": true,
            "do_resize": true, "image_mean": [0.485, 0.456, 0.406],
            "image_processor_type": "CLIPImageProcessor", "image_seq_length": 577,
            "image_std": [0.229, 0.224, 0.225], "processor_class": "Florence2Processor",
            "resample": 3, "rescale_factor": 0.00392156862745098,
            "size": {"height": 768, "width": 768}}"#,
    )
    .unwrap();
    assert_eq!(
        ImageConfig::from_preprocessor_config(&path).unwrap(),
        ImageConfig::default()
    );
    std::fs::write(&path, r#"{"size": {"shortest_edge": 224}}"#).unwrap();
    let err = ImageConfig::from_preprocessor_config(&path).unwrap_err();
    assert!(matches!(err, ProcessorError::Config { .. }), "{err}");
}
