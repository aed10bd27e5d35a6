//! [`SourceNames`]: each distinct source name once, and a `u32` for it, so that rows and
//! samples keep 4 bytes for their source.

use std::collections::HashMap;

use crate::error::{FedError, Result};

/// Distinct source names, numbered in the order they were first seen.
#[derive(Debug, Clone, Default)]
pub(super) struct SourceNames {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl SourceNames {
    /// The number of `name`, numbering it if it is new.
    ///
    /// # Errors
    /// [`FedError::Task`] past 2^32 names.
    pub(super) fn id(&mut self, name: &str) -> Result<u32> {
        if let Some(&id) = self.ids.get(name) {
            return Ok(id);
        }
        let id = u32::try_from(self.names.len())
            .map_err(|_| FedError::Task("more than 2^32 sources".into()))?;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        Ok(id)
    }

    /// The name numbered `id`.
    pub(super) fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}
