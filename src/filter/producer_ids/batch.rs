//! Record batches (magic 2) inside a Produce partition's records: their
//! producer fields, read within bounds, and rewritten with the CRC-32C
//! (over attributes to the end) recomputed with the `crc32c` crate.

/// Offsets inside one batch.
const BATCH_LENGTH: usize = 8;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
/// The fixed header before the first record.
const HEADER: usize = 61;
const TRANSACTIONAL: u16 = 0x10;
const CONTROL: u16 = 0x20;

/// One batch's producer fields, and where the batch sits in the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub at: usize,
    pub len: usize,
    pub pid: i64,
    pub epoch: i16,
    pub seq: i32,
    /// Transactional or control batches are never rewritten.
    pub transactional: bool,
}

fn be<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

/// Every magic-2 batch in `records`; `None` when the bytes are not a
/// sequence of whole magic-2 batches (the broker answers those itself).
pub fn heads(records: &[u8]) -> Option<Vec<Head>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < records.len() {
        let rest = records.get(at..)?;
        if rest.len() < HEADER || rest[MAGIC] != 2 {
            return None;
        }
        let len = usize::try_from(i32::from_be_bytes(be(rest, BATCH_LENGTH)))
            .ok()?
            .checked_add(12)?;
        if len < HEADER || len > rest.len() {
            return None;
        }
        let attrs = u16::from_be_bytes(be(rest, ATTRIBUTES));
        out.push(Head {
            at,
            len,
            pid: i64::from_be_bytes(be(rest, PRODUCER_ID)),
            epoch: i16::from_be_bytes(be(rest, PRODUCER_EPOCH)),
            seq: i32::from_be_bytes(be(rest, BASE_SEQUENCE)),
            transactional: attrs & (TRANSACTIONAL | CONTROL) != 0,
        });
        at += len;
    }
    Some(out)
}

/// Writes new producer fields into the batch `h` of `records` and
/// recomputes its CRC.
pub fn patch(records: &mut [u8], h: &Head, pid: i64, epoch: i16, seq: i32) {
    let b = &mut records[h.at..h.at + h.len];
    b[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&pid.to_be_bytes());
    b[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&epoch.to_be_bytes());
    b[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// `n` records of one magic-2 batch, encoded by kafka-protocol.
    pub(in crate::filter::producer_ids) fn batch(pid: i64, epoch: i16, seq: i32, n: usize) -> BytesMut {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: seq + i as i32,
                timestamp: 1_700_000_000_000,
                key: Some(bytes::Bytes::from(format!("k{i}"))),
                value: Some(bytes::Bytes::from(vec![b'v'; 100])),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut out = BytesMut::new();
        let opts = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut out, &records, &opts).expect("encode");
        out
    }

    #[test]
    fn two_batches_are_read_patched_and_still_decode_with_a_valid_crc() {
        let mut rec = batch(7, 1, 100, 3);
        rec.extend_from_slice(&batch(7, 1, 103, 2));
        let hs = heads(&rec).expect("two batches");
        assert_eq!(hs.len(), 2);
        assert_eq!((hs[0].pid, hs[0].epoch, hs[0].seq), (7, 1, 100));
        assert_eq!((hs[1].at, hs[1].seq), (hs[0].len, 103));
        for h in &hs {
            patch(&mut rec, h, 4242, 0, h.seq - 100);
        }
        // kafka-protocol's decoder checks each batch's CRC.
        let mut b = rec.freeze();
        let got = RecordBatchDecoder::decode_all(&mut b).expect("valid CRCs after the patch");
        let recs: Vec<_> = got.into_iter().flat_map(|s| s.records).collect();
        assert_eq!(recs.len(), 5);
        assert!(recs
            .iter()
            .all(|r| r.producer_id == 4242 && r.producer_epoch == 0));
        let seqs: Vec<i32> = recs.iter().map(|r| r.sequence).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn cut_or_lying_batches_are_not_read() {
        let rec = batch(7, 1, 0, 2);
        assert!(heads(&rec[..rec.len() - 1]).is_none(), "cut short");
        assert!(heads(&rec[..30]).is_none(), "shorter than a header");
        let mut lying = rec.clone();
        lying[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(heads(&lying).is_none(), "length beyond the records");
        lying[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(heads(&lying).is_none(), "negative length");
        let mut old = rec.clone();
        old[16] = 1;
        assert!(heads(&old).is_none(), "magic 1 has no producer fields");
        assert_eq!(heads(&[]).map(|v| v.len()), Some(0));
    }
}
