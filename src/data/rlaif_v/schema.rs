//! The projection of a shard's schema onto the columns the reader uses, checking their
//! types.

use std::path::Path;
use std::sync::Arc;

use parquet::basic::Type as PhysicalType;
use parquet::schema::types::{Type, TypePtr};

use super::reader::{
    CHOSEN_COLUMN, IMAGE_BYTES_FIELD, IMAGE_COLUMN, ORIGIN_COLUMN, QUESTION_COLUMN,
};
use crate::data::DataError;

/// The projection of the file schema `root` onto the four used columns, in the order
/// the reader's `fields` expects; the image struct is cut down to its `bytes` field.
pub(super) fn projection(path: &Path, root: &TypePtr) -> Result<Type, DataError> {
    let missing = |column: &str, reason: &str| DataError::MissingColumn {
        path: path.display().to_string(),
        column: column.to_string(),
        reason: reason.to_string(),
    };
    let find = |name: &str| {
        root.get_fields()
            .iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| missing(name, "is missing"))
    };
    let is_binary =
        |f: &TypePtr| f.is_primitive() && f.get_physical_type() == PhysicalType::BYTE_ARRAY;
    let mut fields = Vec::with_capacity(4);
    for name in [QUESTION_COLUMN, CHOSEN_COLUMN, ORIGIN_COLUMN] {
        let field = find(name)?;
        if !is_binary(field) {
            return Err(missing(name, "is not a string column"));
        }
        fields.push(Arc::clone(field));
    }
    let image = find(IMAGE_COLUMN)?;
    let image = if is_binary(image) {
        Arc::clone(image)
    } else if image.is_group() {
        let bytes = image
            .get_fields()
            .iter()
            .find(|f| f.name() == IMAGE_BYTES_FIELD && is_binary(f))
            .ok_or_else(|| missing(IMAGE_COLUMN, "has no binary `bytes` field"))?;
        let info = image.get_basic_info();
        let mut builder =
            Type::group_type_builder(IMAGE_COLUMN).with_fields(vec![Arc::clone(bytes)]);
        if info.has_repetition() {
            builder = builder.with_repetition(info.repetition());
        }
        Arc::new(
            builder
                .build()
                .map_err(|e| missing(IMAGE_COLUMN, &e.to_string()))?,
        )
    } else {
        return Err(missing(IMAGE_COLUMN, "is neither binary nor a struct"));
    };
    fields.push(image);
    Type::group_type_builder(root.name())
        .with_fields(fields)
        .build()
        .map_err(|e| DataError::NotParquet {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}
