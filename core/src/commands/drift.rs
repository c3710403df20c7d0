//! Drift: what differs, while running, from the bridged state env-qemu set up (a route
//! someone deleted, a port someone removed, a client that left the bridge). `status`
//! shows it; `stop` repairs what is its to repair, being a convergence on the saved state.

use super::{CommandError, Env};
use crate::converge::Goal;
use crate::exec::Machine;
use crate::observe::observe_machine;
use crate::state::State;
use crate::verify::{self, Difference};

/// The differences between the live state and the bridged goal of `state`, and those of
/// each tap env-qemu attached (it must still be a port of the bridge).
pub async fn drift(env: &Env<'_>, state: &State) -> Result<Vec<Difference>, CommandError> {
    let goal = Goal::Bridged {
        pre: state.pre.clone(),
        req: state.request.clone(),
    };
    let machine = Machine {
        kernel: env.kernel,
        host: env.host,
    };
    let mut scope = goal.scope();
    scope
        .filter
        .links
        .extend(state.taps.iter().map(|t| t.name.clone()));
    let live = observe_machine(machine, &scope).await?;
    let mut out = goal.expected().differences(&live);
    let mtu = live.net.link(&state.request.bridge).map_or(0, |b| b.mtu);
    for t in &state.taps {
        let attached = verify::attached(&t.name, &state.request.bridge, mtu);
        out.extend(attached.differences(&live));
    }
    Ok(out)
}
