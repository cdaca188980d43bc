//! Deterministic tar.gz: sorted entries, fixed owner, mode and mtime, gzip without name or time.

use std::io::Read;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// Write `entries` (path without leading `/`, bytes) as a gzipped tar with `/`-rooted names, like `opa build`.
pub fn write_archive(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut sorted: Vec<&(String, Vec<u8>)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let gz = flate2::GzBuilder::new().mtime(0).operating_system(255).write(Vec::new(), Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for (path, bytes) in sorted {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        // Writing into a Vec cannot fail. The tar crate refuses absolute names, so the
        // `/`-rooted name OPA's own bundles use is written into the ustar fields directly.
        if set_rooted_name(&mut header, path) {
            header.set_cksum();
            let _ = tar.append(&header, bytes.as_slice());
        } else {
            let _ = tar.append_data(&mut header, path, bytes.as_slice());
        }
    }
    let gz: GzEncoder<Vec<u8>> = match tar.into_inner() {
        Ok(gz) => gz,
        Err(_) => return Vec::new(),
    };
    gz.finish().unwrap_or_default()
}

/// Put `/path` in the ustar `name` (100 bytes) and `prefix` (155 bytes) fields; false when it does not fit.
fn set_rooted_name(header: &mut tar::Header, path: &str) -> bool {
    let full = format!("/{path}");
    let bytes = full.as_bytes();
    let Some(ustar) = header.as_ustar_mut() else { return false };
    if bytes.len() < ustar.name.len() {
        ustar.name[..bytes.len()].copy_from_slice(bytes);
        return true;
    }
    // Split at a `/` so that the prefix and the rest each fit.
    let split = (1..bytes.len())
        .rev()
        .find(|&i| bytes[i] == b'/' && i < ustar.prefix.len() && bytes.len() - i - 1 < ustar.name.len());
    let Some(i) = split else { return false };
    ustar.prefix[..i].copy_from_slice(&bytes[..i]);
    ustar.name[..bytes.len() - i - 1].copy_from_slice(&bytes[i + 1..]);
    true
}

/// Read a bundle archive back into (path without leading `/`, bytes), in archive order.
pub fn read_archive(bytes: &[u8]) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut tar = tar::Archive::new(GzDecoder::new(bytes));
    let mut out = Vec::new();
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().trim_start_matches('/').to_string();
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf)?;
        out.push((path, buf));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_round_trips_and_is_deterministic() {
        let long = format!("{}/{}.rego", "p".repeat(120), "q".repeat(90));
        let a = vec![
            ("b.rego".to_string(), b"package b".to_vec()),
            ("a/data.json".to_string(), b"{}".to_vec()),
            (long.clone(), b"package long".to_vec()),
        ];
        let mut reversed = a.clone();
        reversed.reverse();
        let bytes = write_archive(&a);
        assert_eq!(bytes, write_archive(&reversed));
        let back = read_archive(&bytes).expect("reads");
        assert_eq!(back[0], ("a/data.json".to_string(), b"{}".to_vec()));
        assert_eq!(back[1], ("b.rego".to_string(), b"package b".to_vec()));
        assert_eq!(back[2], (long, b"package long".to_vec()));
        let raw = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()))
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry").path().expect("path").to_string_lossy().into_owned())
            .collect::<Vec<_>>();
        assert_eq!(raw[0], "/a/data.json", "names are rooted like opa build's");
    }
}
