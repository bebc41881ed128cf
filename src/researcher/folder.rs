//! Experimentation folders: `<experiments dir>/Experiment_0001`, `_0002`, …
//! or a name the researcher chose.

use std::path::{Path, PathBuf};

use super::ExperimentError;

/// Prefix of automatically numbered folders.
const PREFIX: &str = "Experiment_";

/// Where experiments live: `$FEDWASM_DIR/var/experiments`, with `FEDWASM_DIR`
/// defaulting to `~/.fedwasm` (or `./.fedwasm` without a home folder).
pub fn default_experiments_dir() -> PathBuf {
    let root = std::env::var_os("FEDWASM_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".fedwasm")))
        .unwrap_or_else(|| PathBuf::from(".fedwasm"));
    root.join("var").join("experiments")
}

/// The number of an automatically named folder, if it is one.
pub fn folder_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The next automatic name in `dir`: one more than the highest
/// `Experiment_NNNN` there (so deleting a folder never reuses a number that
/// is still present, and other folders do not shift the count).
pub fn next_folder_name(dir: &Path) -> Result<String, ExperimentError> {
    let highest = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().and_then(folder_number))
            .max()
            .unwrap_or(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(source) => {
            return Err(ExperimentError::Io {
                what: format!("reading {}", dir.display()),
                source,
            });
        }
    };
    Ok(format!("{PREFIX}{:04}", highest + 1))
}

/// A folder name the researcher gave, made safe: characters other than
/// letters, digits, `-`, `_` and `.` become `_`. A path is refused.
/// Returns the name and whether it changed.
pub fn sanitize_folder_name(name: &str) -> Result<(String, bool), ExperimentError> {
    if name.contains('/') || name.contains('\\') || name == "." || name == ".." {
        return Err(ExperimentError::Argument(format!(
            "experimentation_folder `{name}` must be a folder name, not a path; experiments live in the experiments directory"
        )));
    }
    let clean: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        return Err(ExperimentError::Argument(format!(
            "experimentation_folder `{name}` has no usable character"
        )));
    }
    let changed = clean != name;
    Ok((clean, changed))
}

/// The latest automatically numbered experiment folder in `dir`.
pub fn latest_folder(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let n = folder_number(e.file_name().to_str()?)?;
            Some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_follows_the_highest_existing_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_folder_name(dir.path()).unwrap(), "Experiment_0001");
        for name in [
            "Experiment_0001",
            "Experiment_0007",
            "my-study",
            "Experiment_12x",
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        assert_eq!(next_folder_name(dir.path()).unwrap(), "Experiment_0008");
        assert_eq!(
            latest_folder(dir.path()).unwrap().file_name().unwrap(),
            "Experiment_0007"
        );
        assert_eq!(
            next_folder_name(&dir.path().join("missing")).unwrap(),
            "Experiment_0001"
        );
    }

    #[test]
    fn names_are_sanitized_and_paths_refused() {
        assert_eq!(
            sanitize_folder_name("study-1").unwrap(),
            ("study-1".into(), false)
        );
        assert_eq!(
            sanitize_folder_name("my study: v2").unwrap(),
            ("my_study__v2".into(), true)
        );
        for bad in ["../x", "a/b", "..", "", "???"] {
            let err = sanitize_folder_name(bad);
            assert!(bad == "???" || err.is_err(), "{bad}");
        }
        assert!(
            sanitize_folder_name("../x")
                .unwrap_err()
                .to_string()
                .contains("not a path")
        );
    }
}
