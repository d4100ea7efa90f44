//! Checked big-endian reads. Every read of datagram bytes goes through
//! these: they return `None` (or 0 for an empty slice) instead of panicking.

/// `u16` at `at`, or `None` past the end.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(s.try_into().ok()?))
}

/// `u32` at `at`, or `None` past the end.
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(s.try_into().ok()?))
}

/// Unsigned big-endian integer of 0..=8 bytes (IPFIX reduced-size
/// encoding). Longer slices keep their last 8 bytes; empty reads as 0.
#[inline]
pub(crate) fn be_uint(b: &[u8]) -> u64 {
    match b.len() {
        1 => b.first().map_or(0, |&x| u64::from(x)),
        2 => b.try_into().map_or(0, |a| u64::from(u16::from_be_bytes(a))),
        4 => b.try_into().map_or(0, |a| u64::from(u32::from_be_bytes(a))),
        8 => b.try_into().map_or(0, u64::from_be_bytes),
        _ => b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
    }
}

/// Unsigned big-endian integer of `length` (1..=8) bytes at `at` in
/// `b`. Where 8 bytes are left from `at`, one unaligned load shifted
/// right (the bytes after the field fall out); else a checked read that
/// gives 0 past the end, like [`be_uint`] of an empty slice.
#[inline]
pub(crate) fn be_uint_at(b: &[u8], at: usize, length: u8) -> u64 {
    let length = length.clamp(1, 8);
    match b.get(at..at.wrapping_add(8)) {
        Some(w) => {
            u64::from_be_bytes(w.try_into().unwrap_or_default()) >> (64 - 8 * u32::from(length))
        }
        None => be_uint(
            b.get(at..at.saturating_add(usize::from(length)))
                .unwrap_or_default(),
        ),
    }
}

/// `u128` from exactly 16 bytes, else 0.
#[inline]
pub(crate) fn be128(b: &[u8]) -> u128 {
    b.try_into().map_or(0, u128::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked() {
        let b = [1u8, 2, 3, 4, 5];
        assert_eq!(be16(&b, 0), Some(0x0102));
        assert_eq!(be16(&b, 4), None);
        assert_eq!(be16(&b, usize::MAX), None);
        assert_eq!(be32(&b, 1), Some(0x0203_0405));
        assert_eq!(be32(&b, 2), None);
        assert_eq!(be_uint(&b[..3]), 0x01_0203);
        assert_eq!(be_uint(&[]), 0);
        assert_eq!(be_uint(&[0xff; 8]), u64::MAX);
        assert_eq!(be128(&b), 0);
    }

    #[test]
    fn reads_at_an_offset_equal_slice_reads() {
        let b: Vec<u8> = (1..=20u8).map(|x| x.wrapping_mul(37)).collect();
        for at in 0..=b.len() + 2 {
            for length in 1..=8u8 {
                // A field running past the end reads as 0.
                let want = b.get(at..at + usize::from(length)).map_or(0, be_uint);
                assert_eq!(be_uint_at(&b, at, length), want, "at {at} length {length}");
            }
        }
        assert_eq!(be_uint_at(&b, usize::MAX, 4), 0);
    }
}
