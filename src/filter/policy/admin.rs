//! Admin requests about topics, per entry: DeleteRecords (delete on the
//! topic), CreatePartitions (create), DescribeConfigs (describe) and
//! AlterConfigs / IncrementalAlterConfigs (create: whoever may create a
//! topic may configure it). Config resources that are not topics (brokers,
//! broker loggers, …) pass the API-key gate only; a denied API key denies
//! them with 31.

use super::bounds;
use super::frame::{decode, split, take_denied};
use super::gate::{finish, Gate, Outcome, CLUSTER_DENIED, TOPIC_DENIED};
use crate::config::policy::op;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::incremental_alter_configs_response as iac;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const TOPIC_RESOURCE: i8 = 2;

/// Whether a config resource is allowed, and the code when it is not.
fn resource(g: &mut Gate, kind: i8, name: &str, o: u8) -> Option<i16> {
    if kind == TOPIC_RESOURCE {
        (!g.topic(name, o)).then_some(TOPIC_DENIED)
    } else {
        (!g.api()).then_some(CLUSTER_DENIED)
    }
}

fn message() -> Option<StrBytes> {
    Some(StrBytes::from_static_str("Authorization failed (kgate policy)."))
}

pub fn delete_records(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::DELETE_RECORDS)?;
    let mut req: DeleteRecordsRequest = decode(&mut b, h.version)?;
    let denied = take_denied(&mut req.topics, |t| !g.topic(&t.name, op::DELETE));
    let resp = DeleteRecordsResponse::default().with_topics(
        denied
            .iter()
            .map(|t| {
                DeleteRecordsTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                DeleteRecordsPartitionResult::default()
                                    .with_partition_index(p.partition_index)
                                    .with_low_watermark(-1)
                                    .with_error_code(TOPIC_DENIED)
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    let all = req.topics.is_empty();
    finish(&h, !denied.is_empty(), all, &req, resp, |d| d.topics)
}

pub fn create_partitions(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::CREATE_PARTITIONS)?;
    let mut req: CreatePartitionsRequest = decode(&mut b, h.version)?;
    let denied = take_denied(&mut req.topics, |t| !g.topic(&t.name, op::CREATE));
    let resp = CreatePartitionsResponse::default().with_results(
        denied
            .iter()
            .map(|t| {
                CreatePartitionsTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(TOPIC_DENIED)
                    .with_error_message(message())
            })
            .collect(),
    );
    let all = req.topics.is_empty();
    finish(&h, !denied.is_empty(), all, &req, resp, |d| d.results)
}

pub fn describe_configs(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::DESCRIBE_CONFIGS)?;
    let mut req: DescribeConfigsRequest = decode(&mut b, h.version)?;
    let mut codes = Vec::new();
    let denied = take_denied(&mut req.resources, |r| {
        let c = resource(g, r.resource_type, &r.resource_name, op::DESCRIBE);
        codes.extend(c);
        c.is_some()
    });
    let resp = DescribeConfigsResponse::default().with_results(
        denied
            .iter()
            .zip(codes)
            .map(|(r, code)| {
                DescribeConfigsResult::default()
                    .with_error_code(code)
                    .with_error_message(message())
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
            })
            .collect(),
    );
    let all = req.resources.is_empty();
    finish(&h, !denied.is_empty(), all, &req, resp, |d| d.results)
}

pub fn alter_configs(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::ALTER_CONFIGS)?;
    let mut req: AlterConfigsRequest = decode(&mut b, h.version)?;
    let mut codes = Vec::new();
    let denied = take_denied(&mut req.resources, |r| {
        let c = resource(g, r.resource_type, &r.resource_name, op::CREATE);
        codes.extend(c);
        c.is_some()
    });
    let resp = AlterConfigsResponse::default().with_responses(
        denied
            .iter()
            .zip(codes)
            .map(|(r, code)| {
                AlterConfigsResourceResponse::default()
                    .with_error_code(code)
                    .with_error_message(message())
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
            })
            .collect(),
    );
    let all = req.resources.is_empty();
    finish(&h, !denied.is_empty(), all, &req, resp, |d| d.responses)
}

pub fn incremental_alter_configs(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::INCREMENTAL_ALTER_CONFIGS)?;
    let mut req: IncrementalAlterConfigsRequest = decode(&mut b, h.version)?;
    let mut codes = Vec::new();
    let denied = take_denied(&mut req.resources, |r| {
        let c = resource(g, r.resource_type, &r.resource_name, op::CREATE);
        codes.extend(c);
        c.is_some()
    });
    let resp = IncrementalAlterConfigsResponse::default().with_responses(
        denied
            .iter()
            .zip(codes)
            .map(|(r, code)| {
                iac::AlterConfigsResourceResponse::default()
                    .with_error_code(code)
                    .with_error_message(message())
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
            })
            .collect(),
    );
    let all = req.resources.is_empty();
    finish(&h, !denied.is_empty(), all, &req, resp, |d| d.responses)
}
