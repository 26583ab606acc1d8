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
//! a `mmap` each. The idle RSS does not change; an operator's own threshold (`GLIBC_TUNABLES`, or
//! glibc's older `MALLOC_TRIM_THRESHOLD_` / `MALLOC_MMAP_THRESHOLD_`) wins.

/// Memory freed at the top of an arena that glibc keeps rather than returning to the kernel.
pub const TRIM_THRESHOLD: libc::c_int = 8 << 20;
/// Blocks from this size up are mapped on their own (glibc's default starts at 128 KiB and moves).
pub const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// What [`tune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// Both thresholds are set.
    Applied,
    /// The environment already sets a malloc threshold: the operator's values stand.
    LeftToOperator,
    /// glibc refused a value (it never should for these).
    Refused,
    /// Not glibc: nothing to tune.
    Unsupported,
}

/// Sets the thresholds, unless the environment (`var` looks a variable up) already sets one for
/// glibc. Call it once, first thing in `main`, before other threads allocate.
#[must_use]
pub fn tune(var: impl Fn(&str) -> Option<String>) -> Tuning {
    let tunables = var("GLIBC_TUNABLES").unwrap_or_default();
    let operator_set = tunables.contains("malloc.trim_threshold")
        || tunables.contains("malloc.mmap_threshold")
        || var("MALLOC_TRIM_THRESHOLD_").is_some()
        || var("MALLOC_MMAP_THRESHOLD_").is_some();
    if operator_set {
        return Tuning::LeftToOperator;
    }
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_thresholds() -> Tuning {
    // SAFETY: mallopt only stores the values (under the arenas' lock); both are in range.
    let applied = unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
            && libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
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

    /// An environment holding only `name=value`.
    fn environment(name: &'static str, value: &'static str) -> impl Fn(&str) -> Option<String> {
        move |asked| (asked == name).then(|| value.to_owned())
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_both_thresholds() {
        assert_eq!(tune(|_| None), Tuning::Applied);
        assert_eq!(
            tune(environment("GLIBC_TUNABLES", "glibc.pthread.rseq=0")),
            Tuning::Applied
        );
    }

    #[test]
    fn an_operators_own_threshold_stands() {
        for (name, value) in [
            ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
            (
                "GLIBC_TUNABLES",
                "glibc.pthread.rseq=0:glibc.malloc.mmap_threshold=65536",
            ),
            ("MALLOC_TRIM_THRESHOLD_", "0"),
            ("MALLOC_MMAP_THRESHOLD_", "65536"),
        ] {
            assert_eq!(
                tune(environment(name, value)),
                Tuning::LeftToOperator,
                "{name}={value}"
            );
        }
    }
}
