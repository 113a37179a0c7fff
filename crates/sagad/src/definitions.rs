//! Loads `definitions/*.yaml` at start-up; a bad file stops start-up with its name and the field. A step
//! `needs` that the definition's own declarations say nothing provides is logged as a warning: the
//! participants may set keys the file does not declare, so it is not an error.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use saga_core::{Definition, DefinitionError};
use tracing::warn;

/// A definitions directory that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory or a file cannot be read.
    #[error("cannot read {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A file is not a valid definition.
    #[error("{path}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: DefinitionError,
    },
    /// Two files define the same saga type.
    #[error("{path}: saga type {name:?} is already defined by {first}")]
    Duplicate {
        /// The second file.
        path: PathBuf,
        /// The saga type.
        name: String,
        /// The first file.
        first: PathBuf,
    },
    /// No `*.yaml` file was found.
    #[error("no saga definitions (*.yaml) in {0}")]
    Empty(PathBuf),
}

/// Reads and validates every `*.yaml`/`*.yml` file in `dir`.
pub fn load_dir(
    dir: &Path,
    participants: &HashSet<String>,
) -> Result<HashMap<String, Arc<Definition>>, LoadError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| LoadError::Io { path, source }
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();

    let mut definitions = HashMap::new();
    let mut origin: HashMap<String, PathBuf> = HashMap::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let definition =
            Definition::from_yaml(&text, participants).map_err(|source| LoadError::Invalid {
                path: path.clone(),
                source,
            })?;
        if let Some(first) = origin.get(&definition.name) {
            return Err(LoadError::Duplicate {
                path,
                name: definition.name,
                first: first.clone(),
            });
        }
        for need in definition.unprovided_needs() {
            warn!(
                file = %path.display(),
                saga_type = %definition.name,
                step = %need.step,
                key = %need.key,
                "a step needs a state key that neither the input nor an earlier step provides"
            );
        }
        origin.insert(definition.name.clone(), path);
        definitions.insert(definition.name.clone(), Arc::new(definition));
    }
    if definitions.is_empty() {
        return Err(LoadError::Empty(dir.to_owned()));
    }
    Ok(definitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo participants, which sagad's default configuration names.
    fn participants() -> HashSet<String> {
        crate::Settings::default()
            .participants
            .into_keys()
            .collect()
    }

    fn repo_definitions() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../definitions")
    }

    #[test]
    fn the_shipped_definitions_load() {
        let defs = load_dir(&repo_definitions(), &participants()).unwrap();
        assert_eq!(defs.len(), 7, "the seven flows");
        let purchase = &defs["purchase_plan"];
        assert_eq!(purchase.steps.len(), 5);
        assert_eq!(purchase.pivot_index(), Some(4));
        for definition in defs.values() {
            assert_eq!(
                definition.unprovided_needs(),
                [],
                "{}: every need is provided",
                definition.name
            );
        }
    }

    #[test]
    fn a_bad_file_is_named_with_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(repo_definitions().join("purchase_plan.yaml")).unwrap();
        std::fs::write(
            dir.path().join("broken.yaml"),
            text.replace("device", "warehouse"),
        )
        .unwrap();
        let err = load_dir(dir.path(), &participants()).unwrap_err();
        assert!(err.to_string().contains("broken.yaml"), "{err}");
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(cause.starts_with("steps[2].participant"), "{cause}");
    }

    #[test]
    fn two_files_defining_one_type_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(repo_definitions().join("purchase_plan.yaml")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), &text).unwrap();
        std::fs::write(dir.path().join("b.yml"), &text).unwrap();
        let err = load_dir(dir.path(), &participants()).unwrap_err();
        assert!(matches!(err, LoadError::Duplicate { .. }), "{err}");
    }

    #[test]
    fn an_empty_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_dir(dir.path(), &participants()),
            Err(LoadError::Empty(_))
        ));
    }
}
