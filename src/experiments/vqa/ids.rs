//! Where a sample's token ids live until a batch needs them.
//!
//! RLAIF-V's answers run to hundreds of tokens; kept in memory for every sample, their ids
//! would grow a run's memory with the dataset. A sample whose image is in an [`ImageStore`]
//! therefore moves its ids there too ([`SampleIds::store`]) and keeps only where they are
//! (24 bytes); a batch reads its own samples' ids back ([`SampleIds::get`]).

use std::sync::Arc;

use super::image::{EncodedBytes, ImageStore};
use crate::error::{FedError, Result};

/// A sample's token ids: the encoder prompt `<s> question </s>` and the labels
/// `<s> answer </s>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIds {
    /// Encoder text ids.
    pub prompt: Vec<u32>,
    /// Label ids.
    pub answer: Vec<u32>,
}

/// A sample's [`TokenIds`], in memory or in an [`ImageStore`] file.
#[derive(Debug, Clone)]
pub enum SampleIds {
    /// The ids themselves.
    Memory(Arc<TokenIds>),
    /// The prompt's then the answer's ids, as little-endian `u32`, at `offset` of a store.
    Stored {
        /// The store.
        store: Arc<ImageStore>,
        /// Where the prompt's first id is.
        offset: u64,
        /// Number of prompt ids.
        prompt_len: u32,
        /// Number of answer ids.
        answer_len: u32,
    },
}

impl SampleIds {
    /// Ids held in memory.
    pub fn memory(prompt: Vec<u32>, answer: Vec<u32>) -> Self {
        Self::Memory(Arc::new(TokenIds { prompt, answer }))
    }

    /// Number of prompt ids (no I/O).
    pub fn prompt_len(&self) -> usize {
        match self {
            Self::Memory(ids) => ids.prompt.len(),
            Self::Stored { prompt_len, .. } => *prompt_len as usize,
        }
    }

    /// Number of answer ids (no I/O).
    pub fn answer_len(&self) -> usize {
        match self {
            Self::Memory(ids) => ids.answer.len(),
            Self::Stored { answer_len, .. } => *answer_len as usize,
        }
    }

    /// The ids (read back from the store when stored).
    ///
    /// # Errors
    /// [`FedError::Io`] when the store cannot be read.
    pub fn get(&self) -> Result<Arc<TokenIds>> {
        match self {
            Self::Memory(ids) => Ok(Arc::clone(ids)),
            Self::Stored {
                store,
                offset,
                prompt_len,
                answer_len,
            } => {
                let (p, a) = (*prompt_len as usize, *answer_len as usize);
                let stored = EncodedBytes::Stored {
                    store: Arc::clone(store),
                    offset: *offset,
                    len: 4 * (p + a),
                };
                let bytes = stored.bytes()?;
                let mut ids = bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
                let prompt: Vec<u32> = ids.by_ref().take(p).collect();
                let answer: Vec<u32> = ids.collect();
                Ok(Arc::new(TokenIds { prompt, answer }))
            }
        }
    }

    /// The same ids, appended to `store` (ids already stored stay where they are).
    ///
    /// # Errors
    /// [`FedError::Io`] when the store cannot be written, [`FedError::Task`] for more than
    /// 2^32 ids.
    pub fn store(self, store: &Arc<ImageStore>) -> Result<Self> {
        let Self::Memory(ids) = self else {
            return Ok(self);
        };
        let count = |v: &[u32]| {
            u32::try_from(v.len())
                .map_err(|_| FedError::Task(format!("{} token ids in one sample", v.len())))
        };
        let (prompt_len, answer_len) = (count(&ids.prompt)?, count(&ids.answer)?);
        let bytes: Vec<u8> = ids
            .prompt
            .iter()
            .chain(&ids.answer)
            .flat_map(|id| id.to_le_bytes())
            .collect();
        let offset = match store.append(&bytes)? {
            EncodedBytes::Stored { offset, .. } => offset,
            EncodedBytes::Memory(_) => {
                return Err(FedError::Task("a store kept token ids in memory".into()));
            }
        };
        Ok(Self::Stored {
            store: Arc::clone(store),
            offset,
            prompt_len,
            answer_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_ids_read_back_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ImageStore::temporary(dir.path()).unwrap());
        store.append(b"an image first").unwrap();
        let cases = [
            (vec![0, 7, 2], vec![0, 70_000, 1 << 31, 2]),
            (vec![0, 2], vec![0, 2]),
        ];
        for (prompt, answer) in cases {
            let memory = SampleIds::memory(prompt.clone(), answer.clone());
            let stored = memory.clone().store(&store).unwrap();
            assert!(matches!(stored, SampleIds::Stored { .. }));
            assert_eq!(
                (stored.prompt_len(), stored.answer_len()),
                (prompt.len(), answer.len())
            );
            assert_eq!(*stored.get().unwrap(), TokenIds { prompt, answer });
            assert_eq!(stored.get().unwrap(), memory.get().unwrap());
            // Storing again keeps the same place.
            let again = stored.clone().store(&store).unwrap();
            match (&stored, &again) {
                (SampleIds::Stored { offset: a, .. }, SampleIds::Stored { offset: b, .. }) => {
                    assert_eq!(a, b)
                }
                _ => panic!("not stored"),
            }
        }
    }
}
