//! The request bodies the policy reads (and the Metadata response it
//! filters), field by field per version, as Kafka 4.1 defines them; every
//! one is checked against kafka-protocol's encoding in `bounds_tests`.

use super::{Schema, F, M, T};
use T::*;

const PRODUCE_PART: &[F] = &[F(I32, 0, M), F(Bytes, 0, M)];
const PRODUCE_TOPIC: &[F] = &[F(Str, 0, 12), F(Uuid, 13, M), F(Arr(PRODUCE_PART), 0, M)];
pub const PRODUCE: Schema = Schema {
    min: 3,
    max: 13,
    flex: 9,
    body: &[
        F(Str, 3, M),
        F(I16, 0, M),
        F(I32, 0, M),
        F(Arr(PRODUCE_TOPIC), 0, M),
    ],
};

const FETCH_PART: &[F] = &[
    F(I32, 0, M),
    F(I32, 9, M),
    F(I64, 0, M),
    F(I32, 12, M),
    F(I64, 5, M),
    F(I32, 0, M),
    F(Tags(&[(0, Uuid), (1, I64)]), 0, M),
];
const REPLICA_STATE: &[F] = &[F(I32, 0, M), F(I64, 0, M)];
const FETCH_TOPIC: &[F] = &[F(Str, 0, 12), F(Uuid, 13, M), F(Arr(FETCH_PART), 0, M)];
const FORGOTTEN: &[F] = &[F(Str, 7, 12), F(Uuid, 13, M), F(ArrI32, 7, M)];
pub const FETCH: Schema = Schema {
    min: 4,
    max: 18,
    flex: 12,
    body: &[
        F(I32, 0, 14),
        F(I32, 0, M),
        F(I32, 0, M),
        F(I32, 3, M),
        F(I8, 4, M),
        F(I32, 7, M),
        F(I32, 7, M),
        F(Arr(FETCH_TOPIC), 0, M),
        F(Arr(FORGOTTEN), 7, M),
        F(Str, 11, M),
        F(Tags(&[(0, Str), (1, Struct(REPLICA_STATE))]), 0, M),
    ],
};

const LO_PART: &[F] = &[F(I32, 0, M), F(I32, 4, M), F(I64, 0, M)];
const LO_TOPIC: &[F] = &[F(Str, 0, M), F(Arr(LO_PART), 0, M)];
pub const LIST_OFFSETS: Schema = Schema {
    min: 1,
    max: 10,
    flex: 6,
    body: &[F(I32, 0, M), F(I8, 2, M), F(Arr(LO_TOPIC), 0, M), F(I32, 10, M)],
};

const MD_TOPIC: &[F] = &[F(Uuid, 10, M), F(Str, 0, M)];
pub const METADATA: Schema = Schema {
    min: 0,
    max: 13,
    flex: 9,
    body: &[F(Arr(MD_TOPIC), 0, M), F(I8, 4, M), F(I8, 8, 10), F(I8, 8, M)],
};

const OC_PART: &[F] = &[F(I32, 0, M), F(I64, 0, M), F(I32, 6, M), F(Str, 0, M)];
const OC_TOPIC: &[F] = &[F(Str, 0, M), F(Arr(OC_PART), 0, M)];
pub const OFFSET_COMMIT: Schema = Schema {
    min: 2,
    max: 9,
    flex: 8,
    body: &[
        F(Str, 0, M),
        F(I32, 1, M),
        F(Str, 1, M),
        F(Str, 7, M),
        F(I64, 2, 4),
        F(Arr(OC_TOPIC), 0, M),
    ],
};

const OF_TOPIC: &[F] = &[F(Str, 0, M), F(ArrI32, 0, M)];
const OF_GROUP: &[F] = &[F(Str, 8, M), F(Str, 9, M), F(I32, 9, M), F(Arr(OF_TOPIC), 8, M)];
pub const OFFSET_FETCH: Schema = Schema {
    min: 1,
    max: 9,
    flex: 6,
    body: &[
        F(Str, 0, 7),
        F(Arr(OF_TOPIC), 0, 7),
        F(Arr(OF_GROUP), 8, M),
        F(I8, 7, M),
    ],
};

pub const FIND_COORDINATOR: Schema = Schema {
    min: 0,
    max: 6,
    flex: 3,
    body: &[F(Str, 0, 3), F(I8, 1, M), F(ArrStr, 4, M)],
};

pub const DESCRIBE_GROUPS: Schema = Schema {
    min: 0,
    max: 6,
    flex: 5,
    body: &[F(ArrStr, 0, M), F(I8, 3, M)],
};

pub const DELETE_GROUPS: Schema = Schema {
    min: 0,
    max: 2,
    flex: 2,
    body: &[F(ArrStr, 0, M)],
};

const CT_ASSIGN: &[F] = &[F(I32, 0, M), F(ArrI32, 0, M)];
const CT_CONFIG: &[F] = &[F(Str, 0, M), F(Str, 0, M)];
const CT_TOPIC: &[F] = &[
    F(Str, 0, M),
    F(I32, 0, M),
    F(I16, 0, M),
    F(Arr(CT_ASSIGN), 0, M),
    F(Arr(CT_CONFIG), 0, M),
];
pub const CREATE_TOPICS: Schema = Schema {
    min: 2,
    max: 7,
    flex: 5,
    body: &[F(Arr(CT_TOPIC), 0, M), F(I32, 0, M), F(I8, 1, M)],
};

const DT_STATE: &[F] = &[F(Str, 6, M), F(Uuid, 6, M)];
pub const DELETE_TOPICS: Schema = Schema {
    min: 1,
    max: 6,
    flex: 4,
    body: &[F(Arr(DT_STATE), 6, M), F(ArrStr, 0, 5), F(I32, 0, M)],
};

const OFLE_PART: &[F] = &[F(I32, 0, M), F(I32, 2, M), F(I32, 0, M)];
const OFLE_TOPIC: &[F] = &[F(Str, 0, M), F(Arr(OFLE_PART), 0, M)];
pub const OFFSET_FOR_LEADER_EPOCH: Schema = Schema {
    min: 2,
    max: 4,
    flex: 4,
    body: &[F(I32, 3, M), F(Arr(OFLE_TOPIC), 0, M)],
};

const APT_TOPIC: &[F] = &[F(Str, 0, M), F(ArrI32, 0, M)];
const APT_TXN: &[F] = &[
    F(Str, 4, M),
    F(I64, 4, M),
    F(I16, 4, M),
    F(I8, 4, M),
    F(Arr(APT_TOPIC), 4, M),
];
pub const ADD_PARTITIONS_TO_TXN: Schema = Schema {
    min: 0,
    max: 5,
    flex: 3,
    body: &[
        F(Arr(APT_TXN), 4, M),
        F(Str, 0, 3),
        F(I64, 0, 3),
        F(I16, 0, 3),
        F(Arr(APT_TOPIC), 0, 3),
    ],
};

/// Read by the producer-id filter (an idempotent producer's epoch bump
/// names its id from v3 on).
pub const INIT_PRODUCER_ID: Schema = Schema {
    min: 0,
    max: 5,
    flex: 2,
    body: &[F(Str, 0, M), F(I32, 0, M), F(I64, 3, M), F(I16, 3, M)],
};

const TOC_PART: &[F] = &[F(I32, 0, M), F(I64, 0, M), F(I32, 2, M), F(Str, 0, M)];
const TOC_TOPIC: &[F] = &[F(Str, 0, M), F(Arr(TOC_PART), 0, M)];
pub const TXN_OFFSET_COMMIT: Schema = Schema {
    min: 0,
    max: 5,
    flex: 3,
    body: &[
        F(Str, 0, M),
        F(Str, 0, M),
        F(I64, 0, M),
        F(I16, 0, M),
        F(I32, 3, M),
        F(Str, 3, M),
        F(Str, 3, M),
        F(Arr(TOC_TOPIC), 0, M),
    ],
};

const MDR_BROKER: &[F] = &[F(I32, 0, M), F(Str, 0, M), F(I32, 0, M), F(Str, 1, M)];
const MDR_PART: &[F] = &[
    F(I16, 0, M),
    F(I32, 0, M),
    F(I32, 0, M),
    F(I32, 7, M),
    F(ArrI32, 0, M),
    F(ArrI32, 0, M),
    F(ArrI32, 5, M),
];
const MDR_TOPIC: &[F] = &[
    F(I16, 0, M),
    F(Str, 0, M),
    F(Uuid, 10, M),
    F(I8, 1, M),
    F(Arr(MDR_PART), 0, M),
    F(I32, 8, M),
];
/// The broker's Metadata response (decoded by the policy to filter it).
pub const METADATA_RESPONSE: Schema = Schema {
    min: 0,
    max: 13,
    flex: 9,
    body: &[
        F(I32, 3, M),
        F(Arr(MDR_BROKER), 0, M),
        F(Str, 2, M),
        F(I32, 1, M),
        F(Arr(MDR_TOPIC), 0, M),
        F(I32, 8, 10),
        F(I16, 13, M),
    ],
};

const DR_PART: &[F] = &[F(I32, 0, M), F(I64, 0, M)];
const DR_TOPIC: &[F] = &[F(Str, 0, M), F(Arr(DR_PART), 0, M)];
pub const DELETE_RECORDS: Schema = Schema {
    min: 0,
    max: 2,
    flex: 2,
    body: &[F(Arr(DR_TOPIC), 0, M), F(I32, 0, M)],
};

const CP_ASSIGN: &[F] = &[F(ArrI32, 0, M)];
const CP_TOPIC: &[F] = &[F(Str, 0, M), F(I32, 0, M), F(Arr(CP_ASSIGN), 0, M)];
pub const CREATE_PARTITIONS: Schema = Schema {
    min: 0,
    max: 3,
    flex: 2,
    body: &[F(Arr(CP_TOPIC), 0, M), F(I32, 0, M), F(I8, 0, M)],
};

const DC_RES: &[F] = &[F(I8, 0, M), F(Str, 0, M), F(ArrStr, 0, M)];
pub const DESCRIBE_CONFIGS: Schema = Schema {
    min: 1,
    max: 4,
    flex: 4,
    body: &[F(Arr(DC_RES), 0, M), F(I8, 1, M), F(I8, 3, M)],
};

const AC_CONF: &[F] = &[F(Str, 0, M), F(Str, 0, M)];
const AC_RES: &[F] = &[F(I8, 0, M), F(Str, 0, M), F(Arr(AC_CONF), 0, M)];
pub const ALTER_CONFIGS: Schema = Schema {
    min: 0,
    max: 2,
    flex: 2,
    body: &[F(Arr(AC_RES), 0, M), F(I8, 0, M)],
};

const IAC_CONF: &[F] = &[F(Str, 0, M), F(I8, 0, M), F(Str, 0, M)];
const IAC_RES: &[F] = &[F(I8, 0, M), F(Str, 0, M), F(Arr(IAC_CONF), 0, M)];
pub const INCREMENTAL_ALTER_CONFIGS: Schema = Schema {
    min: 0,
    max: 1,
    flex: 1,
    body: &[F(Arr(IAC_RES), 0, M), F(I8, 0, M)],
};

const LG_GROUP: &[F] = &[F(Str, 0, M), F(Str, 0, M), F(Str, 4, M), F(Str, 5, M)];
/// The broker's ListGroups response (filtered to describable groups).
pub const LIST_GROUPS_RESPONSE: Schema = Schema {
    min: 0,
    max: 5,
    flex: 3,
    body: &[F(I32, 1, M), F(I16, 0, M), F(Arr(LG_GROUP), 0, M)],
};

/// An ACL creation and an ACL filter have the same layout: resource type,
/// name, pattern type (v1+), principal, host, operation, permission.
const ACL_ENTRY: &[F] = &[
    F(I8, 0, M),
    F(Str, 0, M),
    F(I8, 1, M),
    F(Str, 0, M),
    F(Str, 0, M),
    F(I8, 0, M),
    F(I8, 0, M),
];
pub const CREATE_ACLS: Schema = Schema {
    min: 1,
    max: 3,
    flex: 2,
    body: &[F(Arr(ACL_ENTRY), 0, M)],
};
pub const DELETE_ACLS: Schema = Schema {
    min: 1,
    max: 3,
    flex: 2,
    body: &[F(Arr(ACL_ENTRY), 0, M)],
};

const DP_TOPIC: &[F] = &[F(Str, 0, M), F(ArrI32, 0, M)];
pub const DESCRIBE_PRODUCERS: Schema = Schema {
    min: 0,
    max: 0,
    flex: 0,
    body: &[F(Arr(DP_TOPIC), 0, M)],
};
pub const CONSUMER_GROUP_DESCRIBE: Schema = Schema {
    min: 0,
    max: 1,
    flex: 0,
    body: &[F(ArrStr, 0, M), F(I8, 0, M)],
};
pub const DESCRIBE_TRANSACTIONS: Schema = Schema {
    min: 0,
    max: 0,
    flex: 0,
    body: &[F(ArrStr, 0, M)],
};
const ARLD_TOPIC: &[F] = &[F(Str, 0, M), F(ArrI32, 0, M)];
const ARLD_DIR: &[F] = &[F(Str, 0, M), F(Arr(ARLD_TOPIC), 0, M)];
pub const ALTER_REPLICA_LOG_DIRS: Schema = Schema {
    min: 1,
    max: 2,
    flex: 2,
    body: &[F(Arr(ARLD_DIR), 0, M)],
};

const DTP_TOPIC: &[F] = &[F(Str, 0, M)];
const DTP_CURSOR: &[F] = &[F(Str, 0, M), F(I32, 0, M)];
pub const DESCRIBE_TOPIC_PARTITIONS: Schema = Schema {
    min: 0,
    max: 0,
    flex: 0,
    body: &[
        F(Arr(DTP_TOPIC), 0, M),
        F(I32, 0, M),
        F(NullStruct(DTP_CURSOR), 0, M),
    ],
};
