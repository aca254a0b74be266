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
}
