//! Byte sizes as Thanos writes them in flags and YAML.

/// A size like Thanos writes it: `250MB`, `1GiB`, `512KB`, `1024` (bytes); base 2 throughout.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected a number and a unit like 250MB"))?;
    let shift = match s[digits..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "KB" | "KIB" | "K" => 10,
        "MB" | "MIB" | "M" => 20,
        "GB" | "GIB" | "G" => 30,
        "TB" | "TIB" | "T" => 40,
        u => return Err(format!("invalid size {s:?}: unknown unit {u:?}")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

/// `n` bytes as a flag value [`parse_size`] reads back: rounded up to whole MiB, in GiB when
/// that is exact (`512MiB`, `2GiB`, `1229MiB`). Sizes under 1 MiB stay in bytes.
pub fn format_size(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    if n < MIB {
        return n.to_string();
    }
    let mib = n.div_ceil(MIB);
    if mib % 1024 == 0 {
        format!("{}GiB", mib / 1024)
    } else {
        format!("{mib}MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_thanos() {
        assert_eq!(parse_size("250MB"), Ok(250 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512kb"), Ok(512 << 10));
        assert!(parse_size("MB").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999TB").is_err());
    }

    #[test]
    fn formatted_sizes_parse_back_rounded_up_to_a_mib() {
        assert_eq!(format_size(2 << 30), "2GiB");
        assert_eq!(format_size(512 << 20), "512MiB");
        assert_eq!(format_size((1 << 30) + 1), "1025MiB");
        assert_eq!(format_size(1000), "1000");
        for n in [0, 1, 1 << 20, (1 << 20) + 1, 1_288_490_189, u64::MAX >> 1] {
            let back = parse_size(&format_size(n)).unwrap();
            assert!(back >= n && back - n < 1 << 20, "{n} -> {back}");
        }
    }
}
