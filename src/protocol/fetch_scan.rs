//! Finds the end of a Fetch v16+ response while it streams, so that only
//! its top-level tagged fields (where KIP-951 `node_endpoints` lives) are
//! held back, and record data is never assembled.
//!
//! The scanner walks the response one small unit at a time — the header,
//! a topic's start, a partition's fields up to its `records` length, a
//! partition's or topic's tagged fields — and tells the pump how many
//! bytes it may forward and how many record bytes follow. The pump keeps
//! at most one unit buffered, so memory stays bounded whatever the frame
//! size. Each unit is parsed with the bounds-checked [`Reader`].

use super::wire::{Reader, WireError};

/// The largest single unit kgate buffers while streaming (a partition's
/// aborted-transaction list is the only thing that can grow).
pub const MAX_UNIT: usize = 1024 * 1024;

const LIE: &str = "array length exceeds the response";

/// What the pump does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Forward `head` parsed bytes, then stream `records` bytes unread.
    Pass { head: usize, records: usize },
    /// The unit is not complete in what is buffered: read more.
    NeedMore,
    /// Everything left in the frame is the top-level tagged-field section.
    Tail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header,
    TopicStart,
    Partition,
    PartitionTags,
    TopicTags,
    Tail,
}

/// Scanner state for one response.
#[derive(Debug)]
pub struct FetchScan {
    phase: Phase,
    topics_left: usize,
    parts_left: usize,
}

impl Default for FetchScan {
    fn default() -> Self {
        Self::new()
    }
}

impl FetchScan {
    /// Starts right after the correlation id (Fetch v16+ has a flexible
    /// response header).
    pub fn new() -> Self {
        FetchScan {
            phase: Phase::Header,
            topics_left: 0,
            parts_left: 0,
        }
    }

    /// Parses the next unit from `avail` (buffered bytes at the scan
    /// position); `rest` is how many bytes of the frame remain from there.
    pub fn step(&mut self, avail: &[u8], rest: usize) -> Result<Step, WireError> {
        if self.phase == Phase::Tail {
            return Ok(Step::Tail);
        }
        let avail = &avail[..avail.len().min(rest)];
        let mut r = Reader::new(avail);
        match self.unit(&mut r, rest) {
            Ok(records) => {
                if records > rest - r.pos() {
                    return Err(WireError {
                        what: "records longer than the frame",
                        offset: r.pos(),
                    });
                }
                Ok(Step::Pass {
                    head: r.pos(),
                    records,
                })
            }
            // A prefix of the frame ran out: the unit continues in bytes
            // not read yet.
            Err(e) if avail.len() < rest && e.what != LIE => Ok(Step::NeedMore),
            Err(e) => Err(e),
        }
    }

    /// Parses one unit and advances the phase; returns the record bytes
    /// that follow it. On error the phase is unchanged.
    fn unit(&mut self, r: &mut Reader<'_>, rest: usize) -> Result<usize, WireError> {
        let mut records = 0;
        let next = match self.phase {
            Phase::Header => {
                r.skip_tagged_fields()?; // response header
                r.skip(4 + 2 + 4)?; // throttle_time_ms, error_code, session_id
                self.topics_left = count(r, rest, 18)?;
                self.after_topic()
            }
            Phase::TopicStart => {
                r.skip(16)?; // topic_id
                self.parts_left = count(r, rest, 37)?;
                self.after_partition()
            }
            Phase::Partition => {
                r.skip(4 + 2 + 8 + 8 + 8)?;
                if let Some(aborted) = r.array_len(true, 17)? {
                    for _ in 0..aborted {
                        r.skip(16)?;
                        r.skip_tagged_fields()?;
                    }
                }
                r.i32()?; // preferred_read_replica
                records = r.uvarint()?.saturating_sub(1) as usize; // compact nullable bytes
                Phase::PartitionTags
            }
            Phase::PartitionTags => {
                r.skip_tagged_fields()?;
                self.parts_left -= 1;
                self.after_partition()
            }
            Phase::TopicTags => {
                r.skip_tagged_fields()?;
                self.topics_left -= 1;
                self.after_topic()
            }
            Phase::Tail => Phase::Tail,
        };
        self.phase = next;
        Ok(records)
    }

    fn after_topic(&self) -> Phase {
        if self.topics_left > 0 {
            Phase::TopicStart
        } else {
            Phase::Tail
        }
    }

    fn after_partition(&self) -> Phase {
        if self.parts_left > 0 {
            Phase::Partition
        } else {
            Phase::TopicTags
        }
    }
}

/// A compact array's length, checked against the bytes left in the whole
/// frame (not only those buffered): `min_elem` bytes per element at least.
fn count(r: &mut Reader<'_>, rest: usize, min_elem: usize) -> Result<usize, WireError> {
    let n = (r.uvarint()? as usize).saturating_sub(1);
    if n.saturating_mul(min_elem) > rest.saturating_sub(r.pos()) {
        return Err(WireError {
            what: LIE,
            offset: r.pos(),
        });
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the scanner over `body` fed `chunk` bytes at a time, as the
    /// pump does; returns (bytes forwarded before the tail, record bytes).
    pub fn drive(body: &[u8], chunk: usize) -> Result<(usize, usize), WireError> {
        let mut s = FetchScan::new();
        let (mut pos, mut buffered, mut records) = (0, chunk.min(body.len()), 0);
        loop {
            match s.step(&body[pos..buffered], body.len() - pos)? {
                Step::Pass { head, records: n } => {
                    pos += head + n;
                    records += n;
                    buffered = buffered.max(pos).min(body.len());
                }
                Step::NeedMore => {
                    assert!(buffered < body.len());
                    buffered = (buffered + chunk).min(body.len());
                }
                Step::Tail => return Ok((pos, records)),
            }
        }
    }

    #[test]
    fn a_lone_tail_is_found_at_once() {
        // header tags, throttle, error, session, zero topics, then tags.
        let mut b = vec![0u8];
        b.extend_from_slice(&[0; 10]);
        b.push(1);
        b.push(0);
        assert_eq!(drive(&b, 1).unwrap(), (12, 0));
    }

    #[test]
    fn lying_lengths_are_errors() {
        let mut b = vec![0u8];
        b.extend_from_slice(&[0; 10]);
        b.push(0x7f); // 126 topics, none present
        assert!(drive(&b, 4).is_err());
    }
}
