//! Partitioned consumers: one consumer's events spread over several instances by stream.
//!
//! A consumer with `partitions = N` keeps N checkpoints and N leases instead of one. Every event
//! belongs to the partition of a stable hash of its stream id ([`Partition::of`]), so the events
//! of one stream are handled in order, by one instance at a time. Each dispatcher that runs the
//! consumer announces itself with a membership row (a lease of its own) and takes free
//! partitions up to its fair share, `ceil(N / instances)`; one holding more than that gives the
//! extra ones back, and the partitions of an instance that died are taken over once their
//! leases expire. The partitions a dispatcher holds run side by side.
//!
//! The rows live beside the unpartitioned ones in the consumer table: `name[i/N]` for partition
//! `i` of `N`, `name[worker:UUID/N]` for an instance. Changing N is a rebuild
//! ([`Dispatcher::rebuild`]), never a silent reshuffle: a dispatcher that finds checkpoints of
//! another layout with events behind them refuses to run the consumer
//! ([`DispatchError::PartitionsChanged`]).

use std::collections::BTreeSet;
use std::fmt;
use std::time::Instant;

use uuid::Uuid;

use super::consumer::Consumer;
use super::{DispatchError, Dispatcher};
use crate::store::ConsumerEntry;
use crate::sync::lock;
use crate::value::StreamId;

/// The most partitions a consumer can have.
pub const MAX_PARTITIONS: u32 = 1024;

/// One partition of a partitioned consumer: the streams whose hash falls on `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    index: u32,
    count: u32,
}

impl Partition {
    /// Partition `index` of `count`, if `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Self> {
        (index < count).then_some(Self { index, count })
    }

    /// The partition of `count` that `stream` belongs to: [`stream_hash`] modulo `count`.
    /// `count` 0 is taken as 1.
    pub fn of(stream: &StreamId, count: u32) -> Self {
        let count = count.max(1);
        Self {
            index: (stream_hash(stream.as_str()) % u64::from(count)) as u32,
            count,
        }
    }

    /// Its index, from 0.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many partitions there are.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether the events of `stream` belong to it.
    pub fn contains(self, stream: &StreamId) -> bool {
        Self::of(stream, self.count) == self
    }

    /// The name of its checkpoint and lease for `consumer`: `consumer[index/count]`.
    pub fn checkpoint(self, consumer: &str) -> String {
        format!("{consumer}[{}/{}]", self.index, self.count)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The stable hash that places a stream in a partition: 64-bit FNV-1a over the UTF-8 bytes of
/// the stream id. It is fixed (unlike `std`'s hasher, which may change between releases), so
/// every process and every version agrees, and other tools can compute it.
///
/// ```
/// use eventsourcery::dispatch::stream_hash;
///
/// assert_eq!(stream_hash(""), 0xcbf2_9ce4_8422_2325);
/// assert_eq!(stream_hash("a"), 0xaf63_dc4c_8601_ec8c);
/// ```
pub fn stream_hash(stream: &str) -> u64 {
    stream.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What one consumer row is, read from its name.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Row {
    /// A partition's checkpoint and lease.
    Partition(Partition),
    /// An instance's membership, with the partition count it runs.
    Member(Uuid, u32),
}

impl Row {
    /// Reads `row` as a row of `consumer`'s partitioning, if it is one.
    pub(crate) fn parse(consumer: &str, row: &str) -> Option<Self> {
        let inner = row
            .strip_prefix(consumer)?
            .strip_prefix('[')?
            .strip_suffix(']')?;
        if let Some(member) = inner.strip_prefix("worker:") {
            let (id, count) = member.split_once('/')?;
            return Some(Self::Member(Uuid::parse_str(id).ok()?, count.parse().ok()?));
        }
        let (index, count) = inner.split_once('/')?;
        Partition::new(index.parse().ok()?, count.parse().ok()?).map(Self::Partition)
    }
}

/// The prefix of every partitioning row of `consumer`.
fn prefix(consumer: &str) -> String {
    format!("{consumer}[")
}

/// The membership row of `owner` for `consumer` with `count` partitions: instances that run
/// another count (during a change of it) do not share with each other.
fn member(consumer: &str, owner: Uuid, count: u32) -> String {
    format!("{consumer}[worker:{owner}/{count}]")
}

/// What a dispatcher last learned of a partitioned consumer's instances.
#[derive(Debug)]
pub(crate) struct Share {
    /// When the instances were last counted.
    surveyed: Instant,
    /// How many were live (this one included).
    instances: u32,
    /// The partitions this dispatcher runs in the current round.
    held: BTreeSet<u32>,
}

/// Where a batch's events come from: a consumer's one checkpoint, or one partition's.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    /// The name of the checkpoint and lease.
    pub(crate) key: String,
    /// The partition, if the consumer is partitioned.
    pub(crate) partition: Option<Partition>,
}

impl Slot {
    /// The single checkpoint of an unpartitioned consumer.
    pub(crate) fn whole(consumer: &str) -> Self {
        Self {
            key: consumer.to_owned(),
            partition: None,
        }
    }

    /// Every slot of `consumer` with `count` partitions.
    pub(crate) fn all(consumer: &str, count: u32) -> Vec<Self> {
        if count <= 1 {
            return vec![Self::whole(consumer)];
        }
        (0..count)
            .filter_map(|index| Partition::new(index, count))
            .map(|partition| Self::part(consumer, partition))
            .collect()
    }

    fn part(consumer: &str, partition: Partition) -> Self {
        Self {
            key: partition.checkpoint(consumer),
            partition: Some(partition),
        }
    }

    /// Whether the events of `stream` are this slot's.
    pub(crate) fn contains(&self, stream: &StreamId) -> bool {
        self.partition.is_none_or(|p| p.contains(stream))
    }
}

impl Dispatcher {
    /// How many partitions `consumer` has here: the builder's setting, else its own.
    pub(crate) fn partitions_of(&self, consumer: &dyn Consumer) -> u32 {
        self.partitions
            .get(consumer.name())
            .copied()
            .unwrap_or_else(|| consumer.partitions())
            .max(1)
    }

    /// Fails if the store holds checkpoints of another partitioning of `consumer` with events
    /// behind them. Checked again every quarter lease, so an instance started with another
    /// count, or an old one still running after a rebuild, is noticed.
    pub(crate) async fn check_layout(
        &self,
        consumer: &dyn Consumer,
        count: u32,
    ) -> Result<(), DispatchError> {
        let name = consumer.name();
        let fresh = lock(&self.layouts)
            .get(name)
            .is_some_and(|checked| checked.elapsed() < self.config.lease / 4);
        if fresh {
            return Ok(());
        }
        let (_, stale) = self.layout(name, count).await?;
        if let Some(stored) = stale {
            lock(&self.layouts).remove(name);
            return Err(DispatchError::PartitionsChanged {
                consumer: name.to_owned(),
                stored,
                configured: count,
            });
        }
        lock(&self.layouts).insert(name.to_owned(), Instant::now());
        Ok(())
    }

    /// The rows of other partitionings of `consumer` (to retire on a rebuild), and the
    /// partition count of one of them that has events behind it, if any (1 for the
    /// unpartitioned row). Retired rows are at position 0, so they never count.
    pub(crate) async fn layout(
        &self,
        name: &str,
        count: u32,
    ) -> Result<(Vec<String>, Option<u32>), DispatchError> {
        let mut other = Vec::new();
        let mut stale = None;
        for entry in self.store.consumers(name).await? {
            let stored = if entry.name == name {
                1
            } else {
                match Row::parse(name, &entry.name) {
                    Some(Row::Partition(p)) => p.count(),
                    _ => continue,
                }
            };
            if stored != count {
                if entry.position > 0 {
                    stale.get_or_insert(stored);
                }
                other.push(entry.name);
            }
        }
        Ok((other, stale))
    }

    /// The partitions of `consumer` this dispatcher should run this round: those it holds, up
    /// to its fair share, and free ones to make it up. It renews its membership first, gives
    /// back what is over its share, and deletes the membership rows of instances whose lease
    /// expired.
    pub(crate) async fn share(&self, name: &str, count: u32) -> Result<Vec<Slot>, DispatchError> {
        let (instances, entries) = self.survey(name, count).await?;
        let mut held = BTreeSet::new();
        let mut taken = BTreeSet::new();
        for ConsumerEntry {
            name: row, holder, ..
        } in entries
        {
            match Row::parse(name, &row) {
                Some(Row::Partition(p)) if p.count() == count => match holder {
                    Some(holder) if holder == self.owner => {
                        held.insert(p.index());
                    }
                    Some(_) => {
                        taken.insert(p.index());
                    }
                    None => {}
                },
                _ => {}
            }
        }
        let fair = count.div_ceil(instances) as usize;
        while held.len() > fair {
            let Some(extra) = held.pop_last() else { break };
            if let Some(partition) = Partition::new(extra, count) {
                self.store
                    .release(&partition.checkpoint(name), self.owner)
                    .await?;
            }
        }
        // Instances that start together try different partitions first.
        let start = (self.owner.as_u128() % u128::from(count)) as u32;
        for index in (0..count).map(|k| (start + k) % count) {
            if held.len() >= fair {
                break;
            }
            if !taken.contains(&index) {
                held.insert(index);
            }
        }
        lock(&self.shares).insert(
            name.to_owned(),
            Share {
                surveyed: Instant::now(),
                instances,
                held: held.clone(),
            },
        );
        Ok(held
            .into_iter()
            .filter_map(|index| Partition::new(index, count))
            .map(|partition| Slot::part(name, partition))
            .collect())
    }

    /// Renews this dispatcher's membership for `name`, deletes the membership rows of
    /// instances whose lease expired (and was not renewed meanwhile), and counts the live
    /// instances (this one included). Returns the count and every partitioning row.
    async fn survey(
        &self,
        name: &str,
        count: u32,
    ) -> Result<(u32, Vec<ConsumerEntry>), DispatchError> {
        let me = member(name, self.owner, count);
        self.store.claim(&me, self.owner, self.config.lease).await?;
        let mut instances: u32 = 1;
        let entries = self.store.consumers(&prefix(name)).await?;
        for entry in &entries {
            if let Some(Row::Member(owner, theirs)) = Row::parse(name, &entry.name)
                && owner != self.owner
            {
                match entry.holder {
                    Some(_) if theirs == count => instances += 1,
                    Some(_) => {}
                    // Unless it was renewed since it was read: then it is live, and counts.
                    None => {
                        if !self.store.forget_expired(&entry.name).await? && theirs == count {
                            instances += 1;
                        }
                    }
                }
            }
        }
        Ok((instances, entries))
    }

    /// Between two batches of `partition`: whether this dispatcher keeps it, or (when an
    /// instance joined since the round began, and this one holds more than its share now)
    /// gives it back. The instances are counted again at most every quarter lease, which also
    /// renews this dispatcher's membership during a long catch-up.
    pub(crate) async fn keep(
        &self,
        name: &str,
        partition: Partition,
    ) -> Result<bool, DispatchError> {
        // Not handed out by `share` (a rebuild runs every partition): nothing to give back.
        let stale = match lock(&self.shares).get(name) {
            Some(share) if share.held.contains(&partition.index()) => {
                share.surveyed.elapsed() >= self.config.lease / 4
            }
            _ => return Ok(true),
        };
        if stale {
            let (instances, _) = self.survey(name, partition.count()).await?;
            if let Some(share) = lock(&self.shares).get_mut(name) {
                share.surveyed = Instant::now();
                share.instances = instances;
            }
        }
        let mut shares = lock(&self.shares);
        let Some(share) = shares.get_mut(name) else {
            return Ok(true);
        };
        let fair = partition.count().div_ceil(share.instances) as usize;
        let rank = share.held.iter().position(|&i| i == partition.index());
        if rank.is_some_and(|rank| rank >= fair) {
            share.held.remove(&partition.index());
            return Ok(false);
        }
        Ok(true)
    }

    /// Gives up every lease this dispatcher holds for `consumer`, and its membership.
    pub(crate) async fn release_all(&self, consumer: &dyn Consumer) -> Result<(), DispatchError> {
        let name = consumer.name();
        let count = self.partitions_of(consumer);
        if count <= 1 {
            return Ok(self.store.release(name, self.owner).await?);
        }
        for entry in self.store.consumers(&prefix(name)).await? {
            match Row::parse(name, &entry.name) {
                Some(Row::Member(owner, _)) if owner == self.owner => {
                    self.store.forget(&entry.name).await?;
                }
                Some(Row::Partition(_)) if entry.holder == Some(self.owner) => {
                    self.store.release(&entry.name, self.owner).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv_1a() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(stream_hash("foobar"), 0x85944171f73967e8);
        assert_eq!(stream_hash("a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn rows_are_read_back_from_their_names() {
        let owner = Uuid::new_v4();
        let p = Partition::new(3, 8).expect("3 < 8");
        assert_eq!(
            Row::parse("balances", &p.checkpoint("balances")),
            Some(Row::Partition(p))
        );
        assert_eq!(
            Row::parse("balances", &member("balances", owner, 8)),
            Some(Row::Member(owner, 8))
        );
        assert_eq!(Row::parse("balances", "balances"), None);
        assert_eq!(Row::parse("balances", "balances[8/8]"), None);
        assert_eq!(Row::parse("balances", "other[1/8]"), None);
    }

    #[test]
    fn every_stream_is_in_exactly_one_partition() {
        for i in 0..200 {
            let stream = StreamId::new(format!("account-{i}"));
            let p = Partition::of(&stream, 8);
            assert!(p.contains(&stream));
            let owners = (0..8)
                .filter_map(|j| Partition::new(j, 8))
                .filter(|p| p.contains(&stream))
                .count();
            assert_eq!(owners, 1);
        }
    }
}
