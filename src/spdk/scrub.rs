//! `bdev_jraid_scrub`: a background pass over every stripe comparing parity with data
//! (`UserOp::Scrub`), counting mismatches and, with `repair`, rewriting the parity of each
//! mismatching stripe (`UserOp::Repair`, marked in the journal like a write). The pass itself
//! runs in [`super::rebuild`] (shared with the rebuild); progress and results appear under
//! "scrub" in `bdev_jraid_get_bdevs`.

use std::sync::Arc;

use super::bdev::SpdkVolume;
use super::rebuild::{self, PassOpts};

/// Start a scrub of `v`. Errors are (negative errno, message).
pub(crate) fn scrub(
    v: &Arc<SpdkVolume>,
    repair: bool,
    opts: PassOpts,
) -> Result<(), (i32, String)> {
    if v.vol.failed_count() > 0 || v.vol.rebuilding().is_some() {
        return Err((
            -16,
            format!(
                "volume {} is degraded: parity cannot be checked until every member is active",
                v.name
            ),
        ));
    }
    if repair && v.journal().journal.is_failed() {
        return Err((
            -5,
            format!(
                "volume {}: journal failed, repairs cannot be protected",
                v.name
            ),
        ));
    }
    rebuild::start_scrub(v, repair, opts).map_err(|e| (-16, e))
}
