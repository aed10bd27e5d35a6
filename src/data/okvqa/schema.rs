//! The projection of an OK-VQA file's schema onto the columns the reader uses, checking
//! their types.

use std::path::Path;
use std::sync::Arc;

use parquet::basic::{Repetition, Type as PhysicalType};
use parquet::schema::types::{Type, TypePtr};

use super::reader::{
    IMAGE_BYTES_FIELD, OKVQA_ANSWER_TYPE_COLUMN, OKVQA_ANSWERS_COLUMN, OKVQA_IMAGE_COLUMN,
    OKVQA_QUESTION_COLUMN, OKVQA_QUESTION_ID_COLUMN, OKVQA_QUESTION_TYPE_COLUMN,
};
use crate::data::DataError;

/// The projection of the file schema `root` onto the used columns: `question`, `answers`
/// and `image` must be there (the image struct is cut down to its `bytes` field);
/// `question_id`, `question_type` and `answer_type` are taken when present.
pub(super) fn projection(path: &Path, root: &TypePtr) -> Result<Type, DataError> {
    let missing = |column: &str, reason: &str| DataError::MissingColumn {
        path: path.display().to_string(),
        column: column.to_string(),
        reason: reason.to_string(),
    };
    let find = |name: &str| root.get_fields().iter().find(|f| f.name() == name);
    let is_binary =
        |f: &TypePtr| f.is_primitive() && f.get_physical_type() == PhysicalType::BYTE_ARRAY;
    let mut fields = Vec::with_capacity(6);

    let question =
        find(OKVQA_QUESTION_COLUMN).ok_or_else(|| missing(OKVQA_QUESTION_COLUMN, "is missing"))?;
    if !is_binary(question) {
        return Err(missing(OKVQA_QUESTION_COLUMN, "is not a string column"));
    }
    fields.push(Arc::clone(question));

    let answers =
        find(OKVQA_ANSWERS_COLUMN).ok_or_else(|| missing(OKVQA_ANSWERS_COLUMN, "is missing"))?;
    if !is_string_list(answers) {
        return Err(missing(OKVQA_ANSWERS_COLUMN, "is not a list of strings"));
    }
    fields.push(Arc::clone(answers));

    let image =
        find(OKVQA_IMAGE_COLUMN).ok_or_else(|| missing(OKVQA_IMAGE_COLUMN, "is missing"))?;
    fields.push(image_projection(image, &missing)?);

    for optional in [
        OKVQA_QUESTION_ID_COLUMN,
        OKVQA_QUESTION_TYPE_COLUMN,
        OKVQA_ANSWER_TYPE_COLUMN,
    ] {
        if let Some(field) = find(optional)
            && field.is_primitive()
            && !is_repeated(field)
        {
            fields.push(Arc::clone(field));
        }
    }
    Type::group_type_builder(root.name())
        .with_fields(fields)
        .build()
        .map_err(|e| DataError::NotParquet {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// Whether `field` is a list whose leaf is a string: a `LIST` group (three-level, or a
/// legacy two-level one) or a repeated binary column.
fn is_string_list(field: &TypePtr) -> bool {
    if field.is_primitive() {
        return is_repeated(field) && field.get_physical_type() == PhysicalType::BYTE_ARRAY;
    }
    let mut node = field;
    let mut repeated = false;
    // Walk single-child groups down to the leaf (at most list -> element).
    for _ in 0..3 {
        if node.is_primitive() {
            break;
        }
        let [child] = node.get_fields() else {
            return false;
        };
        repeated |= is_repeated(child);
        node = child;
    }
    repeated && node.is_primitive() && node.get_physical_type() == PhysicalType::BYTE_ARRAY
}

/// Whether a field is `repeated` (a field without a repetition, as only a hostile footer
/// would have below the root, is not).
fn is_repeated(field: &TypePtr) -> bool {
    let info = field.get_basic_info();
    info.has_repetition() && info.repetition() == Repetition::REPEATED
}

/// The image column cut down to its `bytes` field (or the plain binary column).
fn image_projection(
    image: &TypePtr,
    missing: &dyn Fn(&str, &str) -> DataError,
) -> Result<TypePtr, DataError> {
    let is_binary =
        |f: &TypePtr| f.is_primitive() && f.get_physical_type() == PhysicalType::BYTE_ARRAY;
    if is_binary(image) {
        return Ok(Arc::clone(image));
    }
    if !image.is_group() {
        return Err(missing(
            OKVQA_IMAGE_COLUMN,
            "is neither binary nor a struct",
        ));
    }
    let bytes = image
        .get_fields()
        .iter()
        .find(|f| f.name() == IMAGE_BYTES_FIELD && is_binary(f))
        .ok_or_else(|| missing(OKVQA_IMAGE_COLUMN, "has no binary `bytes` field"))?;
    let info = image.get_basic_info();
    let mut builder =
        Type::group_type_builder(OKVQA_IMAGE_COLUMN).with_fields(vec![Arc::clone(bytes)]);
    if info.has_repetition() {
        builder = builder.with_repetition(info.repetition());
    }
    builder
        .build()
        .map(Arc::new)
        .map_err(|e| missing(OKVQA_IMAGE_COLUMN, &e.to_string()))
}
