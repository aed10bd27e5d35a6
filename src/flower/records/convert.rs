//! Conversions between the config and metric records and their protobuf forms.

use std::collections::BTreeMap;

use super::{ConfigRecord, MetricRecord, Value};
use crate::flower::error::FlowerError;
use crate::flower::proto;

use proto::config_record_value::Value as CV;
use proto::metric_record_value::Value as MV;

impl ConfigRecord {
    /// The protobuf form.
    pub fn to_proto(&self) -> proto::ConfigRecord {
        let items = self
            .entries
            .iter()
            .map(|(key, v)| {
                let value = match v.clone() {
                    Value::Double(x) => CV::Double(x),
                    Value::Sint64(x) => CV::Sint64(x),
                    Value::Uint64(x) => CV::Uint64(x),
                    Value::Bool(x) => CV::Bool(x),
                    Value::String(x) => CV::String(x),
                    Value::Bytes(x) => CV::Bytes(x),
                    Value::DoubleList(vals) => CV::DoubleList(proto::DoubleList { vals }),
                    Value::Sint64List(vals) => CV::SintList(proto::SintList { vals }),
                    Value::Uint64List(vals) => CV::UintList(proto::UintList { vals }),
                    Value::BoolList(vals) => CV::BoolList(proto::BoolList { vals }),
                    Value::StringList(vals) => CV::StringList(proto::StringList { vals }),
                    Value::BytesList(vals) => CV::BytesList(proto::BytesList { vals }),
                };
                proto::config_record::Item {
                    key: key.clone(),
                    value: Some(proto::ConfigRecordValue { value: Some(value) }),
                }
            })
            .collect();
        proto::ConfigRecord { items }
    }

    /// From the protobuf form; an item without a value is an error.
    pub fn from_proto(record: proto::ConfigRecord) -> Result<Self, FlowerError> {
        let mut entries = Vec::with_capacity(record.items.len());
        for item in record.items {
            let value = match item.value.and_then(|v| v.value) {
                Some(CV::Double(x)) => Value::Double(x),
                Some(CV::Sint64(x)) => Value::Sint64(x),
                Some(CV::Uint64(x)) => Value::Uint64(x),
                Some(CV::Bool(x)) => Value::Bool(x),
                Some(CV::String(x)) => Value::String(x),
                Some(CV::Bytes(x)) => Value::Bytes(x),
                Some(CV::DoubleList(l)) => Value::DoubleList(l.vals),
                Some(CV::SintList(l)) => Value::Sint64List(l.vals),
                Some(CV::UintList(l)) => Value::Uint64List(l.vals),
                Some(CV::BoolList(l)) => Value::BoolList(l.vals),
                Some(CV::StringList(l)) => Value::StringList(l.vals),
                Some(CV::BytesList(l)) => Value::BytesList(l.vals),
                None => {
                    return Err(FlowerError::decode(
                        "ConfigRecord",
                        format!("`{}` has no value", item.key),
                    ));
                }
            };
            entries.push((item.key, value));
        }
        Ok(Self { entries })
    }
}

impl MetricRecord {
    /// The protobuf form; a non-numeric value is an error.
    pub fn to_proto(&self) -> Result<proto::MetricRecord, FlowerError> {
        let mut items = Vec::with_capacity(self.entries.len());
        for (key, v) in &self.entries {
            let value = match v.clone() {
                Value::Double(x) => MV::Double(x),
                Value::Sint64(x) => MV::Sint64(x),
                Value::Uint64(x) => MV::Uint64(x),
                Value::DoubleList(vals) => MV::DoubleList(proto::DoubleList { vals }),
                Value::Sint64List(vals) => MV::SintList(proto::SintList { vals }),
                Value::Uint64List(vals) => MV::UintList(proto::UintList { vals }),
                other => {
                    return Err(FlowerError::Protocol(format!(
                        "metric `{key}` is not numeric: {other:?}"
                    )));
                }
            };
            items.push(proto::metric_record::Item {
                key: key.clone(),
                value: Some(proto::MetricRecordValue { value: Some(value) }),
            });
        }
        Ok(proto::MetricRecord { items })
    }

    /// From the protobuf form; an item without a value is an error.
    pub fn from_proto(record: proto::MetricRecord) -> Result<Self, FlowerError> {
        let mut entries = Vec::with_capacity(record.items.len());
        for item in record.items {
            let value = match item.value.and_then(|v| v.value) {
                Some(MV::Double(x)) => Value::Double(x),
                Some(MV::Sint64(x)) => Value::Sint64(x),
                Some(MV::Uint64(x)) => Value::Uint64(x),
                Some(MV::DoubleList(l)) => Value::DoubleList(l.vals),
                Some(MV::SintList(l)) => Value::Sint64List(l.vals),
                Some(MV::UintList(l)) => Value::Uint64List(l.vals),
                None => {
                    return Err(FlowerError::decode(
                        "MetricRecord",
                        format!("`{}` has no value", item.key),
                    ));
                }
            };
            entries.push((item.key, value));
        }
        Ok(Self { entries })
    }
}

/// A run's `override_config` (protobuf `Scalar`s) as values, in key order.
pub fn scalars_to_values(map: &BTreeMap<String, proto::Scalar>) -> Vec<(String, Value)> {
    use proto::scalar::Scalar as S;
    map.iter()
        .filter_map(|(k, s)| {
            let v = match s.scalar.clone()? {
                S::Double(x) => Value::Double(x),
                S::Uint64(x) => Value::Uint64(x),
                S::Sint64(x) => Value::Sint64(x),
                S::Bool(x) => Value::Bool(x),
                S::String(x) => Value::String(x),
                S::Bytes(x) => Value::Bytes(x),
            };
            Some((k.clone(), v))
        })
        .collect()
}
