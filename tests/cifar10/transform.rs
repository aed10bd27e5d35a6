//! The image transform: bilinear resizing and normalisation by hand, augmentation, batches.

use super::*;

// ---------------------------------------------------------------------------------------
// Image transform
// ---------------------------------------------------------------------------------------

/// A transform that only scales to [0, 1] (mean 0, std 1) and resizes to `size`.
fn plain(size: usize) -> ImageTransform {
    ImageTransform {
        size,
        mean: [0.0; 3],
        std: [1.0; 3],
        random_crop_padding: None,
        horizontal_flip: false,
    }
}
fn assert_close(actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len());
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!((a - e).abs() < 1e-6, "value {i}: {a} != {e}");
    }
}
/// A 3-channel image whose R plane is `r`, G plane is `255 - r`, B plane all `b`.
fn rgb(r: &[u8], b: u8) -> Vec<u8> {
    let mut img = r.to_vec();
    img.extend(r.iter().map(|v| 255 - v));
    img.extend(std::iter::repeat_n(b, r.len()));
    img
}
#[test]
fn bilinear_upscale_2_to_4_matches_hand_computation() {
    // R plane [[0, 51], [102, 255]] / 255 = [[0, 0.2], [0.4, 1.0]].
    //
    // align_corners=False, in = 2, out = 4, scale = in / out = 0.5, source coordinate
    // s = max((d + 0.5) * 0.5 - 0.5, 0):
    //   d = 0: s = -0.25 -> 0    : taps (0, 1), weights (1, 0)
    //   d = 1: s =  0.25         : taps (0, 1), weights (0.75, 0.25)
    //   d = 2: s =  0.75         : taps (0, 1), weights (0.25, 0.75)
    //   d = 3: s =  1.25 -> i0 = 1 is the last pixel, so taps (1, 1): the value of pixel 1.
    // Along one axis, [a, b] becomes [a, 0.75a + 0.25b, 0.25a + 0.75b, b].
    // Rows first: row 0 = [0, 0.05, 0.15, 0.2], row 1 = [0.4, 0.55, 0.85, 1.0].
    // Then columns, with the same weights:
    //   y = 0: row 0                          = [0,    0.05,   0.15,   0.2 ]
    //   y = 1: 0.75 row 0 + 0.25 row 1        = [0.1,  0.175,  0.325,  0.4 ]
    //   y = 2: 0.25 row 0 + 0.75 row 1        = [0.3,  0.425,  0.675,  0.8 ]
    //   y = 3: row 1                          = [0.4,  0.55,   0.85,   1.0 ]
    // e.g. (1, 1): 0.75 * (0.75 * 0 + 0.25 * 0.2) + 0.25 * (0.75 * 0.4 + 0.25 * 1.0)
    //            = 0.75 * 0.05 + 0.25 * 0.55 = 0.0375 + 0.1375 = 0.175.
    let img = rgb(&[0, 51, 102, 255], 51);
    let mut out = Vec::new();
    plain(4).apply(&img, 2, 2, None, &mut out).unwrap();
    assert_eq!(out.len(), 3 * 16);
    let red = [
        0.0, 0.05, 0.15, 0.2, //
        0.1, 0.175, 0.325, 0.4, //
        0.3, 0.425, 0.675, 0.8, //
        0.4, 0.55, 0.85, 1.0,
    ];
    assert_close(&out[..16], &red);
    // G = (255 - R) / 255 = 1 - R, and bilinear weights sum to 1, so G_out = 1 - R_out.
    let green: Vec<f32> = red.iter().map(|v| 1.0 - v).collect();
    assert_close(&out[16..32], &green);
    // A constant plane stays constant: 51 / 255 = 0.2.
    assert_close(&out[32..], &[0.2; 16]);
}
#[test]
fn bilinear_downscale_3_to_2_has_no_antialias() {
    // One row [0, 102, 255] / 255 = [0, 0.4, 1.0], three rows alike, to 2 x 2.
    // scale = 3 / 2 = 1.5; s = (d + 0.5) * 1.5 - 0.5:
    //   d = 0: s = 0.25: 0.75 * 0   + 0.25 * 0.4 = 0.1
    //   d = 1: s = 1.75: 0.25 * 0.4 + 0.75 * 1.0 = 0.85
    // (an antialiased resize would average over wider windows and give other values).
    let row = [0u8, 102, 255];
    let plane: Vec<u8> = row.iter().cycle().take(9).copied().collect();
    let img = rgb(&plane, 0);
    let mut out = Vec::new();
    plain(2).apply(&img, 3, 3, None, &mut out).unwrap();
    assert_close(&out[..4], &[0.1, 0.85, 0.1, 0.85]);
    assert_close(&out[8..], &[0.0; 4]);
}
#[test]
fn same_size_is_identity_and_normalisation_uses_mean_and_std() {
    // 32 -> 32: every output pixel reads exactly one input pixel.
    let img: Vec<u8> = (0..3072).map(|k| (k % 256) as u8).collect();
    let mut out = Vec::new();
    plain(32).apply(&img, 32, 32, None, &mut out).unwrap();
    let expected: Vec<f32> = img.iter().map(|&v| f32::from(v) / 255.0).collect();
    assert_close(&out, &expected);

    // ImageNet normalisation of a white pixel: ((255 / 255) - mean) / std per channel:
    // R (1 - 0.485) / 0.229 = 2.248908, G (1 - 0.456) / 0.224 = 2.428571,
    // B (1 - 0.406) / 0.225 = 2.64; black: -0.485 / 0.229 = -2.117904, ...
    let t = ImageTransform::imagenet(32);
    let mut out = Vec::new();
    t.apply(&[255; 3072], 32, 32, None, &mut out).unwrap();
    t.apply(&[0; 3072], 32, 32, None, &mut out).unwrap(); // appends
    assert_eq!(out.len(), 2 * 3072);
    for (c, want) in [2.248_908_3f32, 2.428_571_4, 2.64].iter().enumerate() {
        assert!(
            out[c * 1024..(c + 1) * 1024]
                .iter()
                .all(|v| (v - want).abs() < 1e-5)
        );
    }
    for (c, want) in [-2.117_904f32, -2.035_714_3, -1.804_444_4]
        .iter()
        .enumerate()
    {
        let plane = &out[3072 + c * 1024..3072 + (c + 1) * 1024];
        assert!(plane.iter().all(|v| (v - want).abs() < 1e-5), "{c}");
    }
}
#[test]
fn bad_shapes_are_errors_not_panics() {
    let mut out = vec![1.0];
    let err = plain(4).apply(&[0; 11], 2, 2, None, &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::ImageShape {
                expected: 12,
                actual: 11,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(out, vec![1.0], "nothing appended on error");
    assert!(plain(0).apply(&[0; 12], 2, 2, None, &mut out).is_err());
    let mut zero_std = plain(4);
    zero_std.std[1] = 0.0;
    assert!(zero_std.apply(&[0; 12], 2, 2, None, &mut out).is_err());
}
/// The augmented image computed independently: crop window shifted by (dy, dx) over the
/// zero-padded image, then mirrored.
fn reference_augment(img: &[u8], h: usize, w: usize, aug: Augmentation) -> Vec<f32> {
    let mut out = vec![0f32; 3 * h * w];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let cx = if aug.flip { w - 1 - x } else { x };
                let (sy, sx) = (y as isize + aug.dy, cx as isize + aug.dx);
                if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                    out[c * h * w + y * w + x] =
                        f32::from(img[c * h * w + sy as usize * w + sx as usize]) / 255.0;
                }
            }
        }
    }
    out
}
#[test]
fn crop_and_flip_follow_the_drawn_augmentation_and_the_seed() {
    // R plane of a 5 x 5 image: R(y, x) = 10 + 3 * (5 y + x).
    let square: Vec<u8> = (0..3 * 25).map(|k| (10 + k * 3) as u8).collect();

    // A hand-checked case: shift down 1, right 2, then flip. Output row 0 reads input row 1;
    // output x reads cropped column 4 - x, i.e. input column 6 - x:
    //   x = 0, 1 -> columns 6, 5: outside, zero padding;
    //   x = 2 -> column 4: R(1, 4) = 10 + 3 * 9 = 37;  x = 4 -> column 2: R(1, 2) = 31.
    // Output row 4 reads input row 5: all padding.
    let aug = Augmentation {
        dy: 1,
        dx: 2,
        flip: true,
    };
    let mut direct = vec![0f32; 75];
    plain(5)
        .apply_augmented(&square, 5, 5, aug, &mut direct)
        .unwrap();
    assert_close(
        &direct[..5],
        &[0.0, 0.0, 37.0 / 255.0, 34.0 / 255.0, 31.0 / 255.0],
    );
    assert_close(&direct[20..25], &[0.0; 5]);
    assert_close(&direct, &reference_augment(&square, 5, 5, aug));

    // Every drawn augmentation is one of the (2p + 1)^2 shifts times 2 flips, the output
    // equals the reference for it, and the same seed draws the same sequence.
    let t = plain(5).with_augmentation(2);
    let mut rng_a = ChaCha8Rng::seed_from_u64(7);
    let mut rng_b = ChaCha8Rng::seed_from_u64(7);
    let mut rng_c = ChaCha8Rng::seed_from_u64(7);
    let mut seen_flip = [false; 2];
    let mut seen_dy = std::collections::BTreeSet::new();
    for _ in 0..200 {
        // `apply` draws exactly one augmentation, so a third generator in lockstep predicts it.
        let aug = t.sample_augmentation(&mut rng_c);
        assert!(
            (-2..=2).contains(&aug.dy) && (-2..=2).contains(&aug.dx),
            "{aug:?}"
        );
        seen_flip[usize::from(aug.flip)] = true;
        seen_dy.insert(aug.dy);

        let mut out_a = Vec::new();
        t.apply(&square, 5, 5, Some(&mut rng_a), &mut out_a)
            .unwrap();
        let mut out_b = Vec::new();
        t.apply(&square, 5, 5, Some(&mut rng_b), &mut out_b)
            .unwrap();
        assert_eq!(out_a, out_b, "same seed, same output");
        assert_close(&out_a, &reference_augment(&square, 5, 5, aug));
    }
    assert_eq!(seen_flip, [true, true]);
    assert_eq!(
        seen_dy.len(),
        5,
        "all five vertical shifts drawn: {seen_dy:?}"
    );

    // Without an rng (evaluation) nothing is augmented.
    let mut out = Vec::new();
    t.apply(&square, 5, 5, None, &mut out).unwrap();
    assert_close(
        &out,
        &reference_augment(&square, 5, 5, Augmentation::default()),
    );

    // Another seed gives another sequence.
    let draws = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..20)
            .map(|_| t.sample_augmentation(&mut rng))
            .collect::<Vec<_>>()
    };
    assert_eq!(draws(1), draws(1));
    assert_ne!(draws(1), draws(2));
}
#[test]
fn tensor_batch_has_the_layout_and_values_of_apply() {
    let split = Cifar10Split {
        images: (0..3 * 3072).map(|k| (k * 7 % 256) as u8).collect(),
        labels: vec![1, 2, 3],
    };
    let device = Default::default();
    let t = ImageTransform::imagenet(8).with_augmentation(4);

    // Evaluation: equals apply() image by image, in index order.
    let x = to_tensor_batch::<Flex>(&split, &[2, 0], &t, None, &device).unwrap();
    assert_eq!(x.dims(), [2, 3, 8, 8]);
    let values = x.into_data().to_vec::<f32>().unwrap();
    let mut expected = Vec::new();
    t.apply(split.image(2), 32, 32, None, &mut expected)
        .unwrap();
    t.apply(split.image(0), 32, 32, None, &mut expected)
        .unwrap();
    assert_close(&values, &expected);

    // Training: augmentations drawn in index order from the rng, as sequential apply() does.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x = to_tensor_batch::<Flex>(&split, &[0, 1, 2], &t, Some(&mut rng), &device).unwrap();
    let values = x.into_data().to_vec::<f32>().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut expected = Vec::new();
    for i in 0..3 {
        t.apply(split.image(i), 32, 32, Some(&mut rng), &mut expected)
            .unwrap();
    }
    assert_close(&values, &expected);

    assert!(matches!(
        to_tensor_batch::<Flex>(&split, &[0, 3], &t, None, &device),
        Err(DataError::IndexOutOfRange { index: 3, len: 3 })
    ));
    assert!(to_tensor_batch::<Flex>(&split, &[], &t, None, &device).is_err());
}
