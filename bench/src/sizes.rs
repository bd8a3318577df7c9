//! Message sizes: parsing them from the command line, the default sweep, and how to print them.

/// The default sweep: 8 bytes, then every power of 4 from 16 bytes to 64 MiB.
pub(crate) fn default_sizes() -> Vec<usize> {
    std::iter::once(8).chain((2..=13).map(|k| 1usize << (2 * k))).collect()
}

/// Parses one size such as `8`, `64K`, `64KiB`, `1M`, `16MiB` or `1G` (binary units).
pub(crate) fn parse_size(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let digits = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let number: usize = number.parse().map_err(|_| format!("{text:?} is not a size (try 64K or 1MiB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("unknown unit {other:?} in {text:?} (use K, M or G)")),
    };
    number.checked_shl(shift).filter(|n| n >> shift == number).ok_or_else(|| format!("{text:?} is too large"))
}

/// A size for people: `8 B`, `64 KiB`, `16 MiB`.
pub(crate) fn show_size(size: usize) -> String {
    match size {
        s if s >= 1 << 30 && s % (1 << 30) == 0 => format!("{} GiB", s >> 30),
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("8").unwrap(), 8);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert!(parse_size("1T").is_err() && parse_size("x").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
        assert_eq!(show_size(64 << 20), "64 MiB");
        assert_eq!(show_size(1000), "1000 B");
        let sweep = default_sizes();
        assert_eq!((sweep[0], sweep[1], *sweep.last().unwrap(), sweep.len()), (8, 16, 64 << 20, 13));
    }
}
