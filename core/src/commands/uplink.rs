//! Choosing the uplink when none is named: it changes nothing, so there is nothing to
//! journal; it reads the main table's routes only.

use super::{CommandError, Env};
use crate::model::{DumpFilter, IfName, TABLE_MAIN};
use crate::plan::default_uplink;

/// The interface carrying the default route ([`default_uplink`]).
pub async fn choose_uplink(env: &Env<'_>) -> Result<IfName, CommandError> {
    let filter = DumpFilter {
        tables: vec![TABLE_MAIN],
        ..DumpFilter::default()
    };
    let net = env.kernel.dump_filtered(&filter).await?;
    Ok(default_uplink(&net)?)
}
