//! The deployment's `template.yaml` as every command reads it: the bundled one, or the
//! file `--template PATH` names. Names, stage settings and the delivery mode all come
//! from it (see `sluice_local::template`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use sluice_local::template::Template;

/// The template at `path`, or the bundled one.
pub fn load_template(path: Option<&PathBuf>) -> Result<Template> {
    match path {
        None => Ok(Template::parse(sluice_local::template::BUNDLED_TEMPLATE)?),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading template {}", p.display()))?;
            Template::parse(&text).with_context(|| format!("parsing template {}", p.display()))
        }
    }
}
