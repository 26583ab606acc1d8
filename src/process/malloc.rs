//! glibc's allocator, tuned once at start so that librdkafka's broker thread keeps the memory it
//! reuses for every produce request.
//!
//! librdkafka compresses each partition's batch with a fresh LZ4 frame context: about 150 KiB of
//! buffers (output, block buffer, hash table, zeroed on creation) allocated and freed per batch.
//! With glibc's defaults the thread's arena gives that memory back after each batch (`madvise`,
//! which also interrupts the other core to flush its TLB) and faults it in again on the next one.
//! At 1,000 deliveries/s that was up to 4.4 page faults per delivery, and without them the broker
//! thread's CPU per delivery fell by about a quarter (docs/benchmarks.md, "The allocator").
//!
//! Fixed thresholds stop both: memory freed at the top of an arena is kept up to
//! [`TRIM_THRESHOLD`], and blocks below [`MMAP_THRESHOLD`] come from the arenas rather than from
//! a `mmap` each. The idle RSS does not change; an operator's own `GLIBC_TUNABLES` for either
//! threshold wins.

/// Memory freed at the top of an arena that glibc keeps rather than returning to the kernel.
pub const TRIM_THRESHOLD: usize = 8 << 20;
/// Blocks from this size up are mapped on their own (glibc's default starts at 128 KiB and moves).
pub const MMAP_THRESHOLD: usize = 1 << 20;

/// What [`tune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// Both thresholds are set.
    Applied,
    /// `GLIBC_TUNABLES` already sets a malloc threshold: the operator's values stand.
    LeftToOperator,
    /// glibc refused a value (it never should for these).
    Refused,
    /// Not glibc: nothing to tune.
    Unsupported,
}

/// Sets the thresholds, unless `tunables` (the value of `GLIBC_TUNABLES`) already sets one.
/// Call it once, first thing in `main`, before other threads allocate.
#[must_use]
pub fn tune(tunables: Option<&str>) -> Tuning {
    if tunables.is_some_and(|value| {
        value.contains("malloc.trim_threshold") || value.contains("malloc.mmap_threshold")
    }) {
        return Tuning::LeftToOperator;
    }
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_thresholds() -> Tuning {
    let as_int = |bytes: usize| libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only stores the values (under the arenas' lock); both are in range.
    let applied = unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, as_int(TRIM_THRESHOLD)) == 1
            && libc::mallopt(libc::M_MMAP_THRESHOLD, as_int(MMAP_THRESHOLD)) == 1
    };
    if applied {
        Tuning::Applied
    } else {
        Tuning::Refused
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> Tuning {
    Tuning::Unsupported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_both_thresholds() {
        assert_eq!(tune(None), Tuning::Applied);
        assert_eq!(tune(Some("glibc.pthread.rseq=0")), Tuning::Applied);
    }

    #[test]
    fn an_operators_own_threshold_stands() {
        for tunables in [
            "glibc.malloc.trim_threshold=0",
            "glibc.pthread.rseq=0:glibc.malloc.mmap_threshold=65536",
        ] {
            assert_eq!(tune(Some(tunables)), Tuning::LeftToOperator, "{tunables}");
        }
    }
}
