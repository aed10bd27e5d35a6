//! The backend a backend-generic test runs on: burn's `Flex` (CPU) by default; CUDA when the
//! tests are built with `--features cuda` and run with `FEDVLM_TEST_CUDA=1` (what
//! `scripts/gpu_check.sh` does). A test is written once, as a [`BackendTest`], and
//! [`run_on_test_backend`] picks the backend at run time.

#![allow(dead_code)]

use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;

/// A test body generic over the (autodiff) backend.
pub trait BackendTest {
    /// Runs the test on `B`, on `device`.
    fn run<B: AutodiffBackend>(device: &B::Device);
}

/// Whether this run asks for CUDA (`FEDVLM_TEST_CUDA=1`).
pub fn cuda_requested() -> bool {
    std::env::var("FEDVLM_TEST_CUDA").is_ok_and(|v| v == "1")
}

/// The name of the backend [`run_on_test_backend`] uses in this run.
pub fn test_backend_name() -> &'static str {
    if cuda_requested() { "cuda" } else { "flex" }
}

/// Runs `T` on CUDA when [`cuda_requested`] (panicking when the tests were built without
/// `--features cuda`: a GPU check must never pass on the CPU by mistake), on Flex otherwise.
pub fn run_on_test_backend<T: BackendTest>() {
    if cuda_requested() {
        #[cfg(feature = "cuda")]
        {
            type C = Autodiff<burn::backend::Cuda>;
            T::run::<C>(&Default::default());
            return;
        }
        #[cfg(not(feature = "cuda"))]
        panic!("FEDVLM_TEST_CUDA=1 needs the tests built with --features cuda");
    }
    #[allow(unreachable_code)]
    {
        type F = Autodiff<burn::backend::Flex>;
        T::run::<F>(&Default::default());
    }
}
